"""Offline region / country / continent lookup."""
import pytest

from pipeline.dataset.regions import locate, slugify


@pytest.mark.parametrize(
    "lon, lat, region, country_code, continent",
    [
        (-97.74, 30.27, "austin", "US", "North America"),
        (119.87, -0.90, "palu", "ID", "Asia"),
        (16.37, 48.21, "vienna", "AT", "Europe"),
        (32.58, 0.31, "kampala", "UG", "Africa"),
        (-77.04, -12.05, "lima", "PE", "South America"),
        (172.63, -43.53, "christchurch", "NZ", "Oceania"),
    ],
)
def test_locate_known_cities(lon, lat, region, country_code, continent):
    loc = locate(lon, lat)
    assert (loc.region, loc.country_code, loc.continent) == (region, country_code, continent)
    assert loc.country


def test_hint_wins_and_is_slugified():
    loc = locate(-122.71, 38.44, region_hint="Santa Rosa")
    assert loc.region == "santa_rosa" and loc.country_code == "US"


def test_remote_place_falls_back_to_first_level_division():
    loc = locate(134.0, -25.0)  # central Australia: no city of 100k within 60 km
    assert loc.continent == "Oceania" and loc.region == slugify(loc.admin1 or loc.place)


@pytest.mark.parametrize("raw, slug", [("São Paulo", "sao_paulo"), ("tyrol-w", "tyrol_w"), ("  Rio  ", "rio")])
def test_slugify(raw, slug):
    assert slugify(raw) == slug


def test_out_of_range_coordinates_are_an_error():
    with pytest.raises(ValueError, match="out of range"):
        locate(200.0, 10.0)
