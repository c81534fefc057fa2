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


@pytest.mark.parametrize("raw, slug", [
    ("São Paulo", "sao_paulo"), ("tyrol-w", "tyrol_w"), ("  Rio  ", "rio"),
    # letters without an ASCII decomposition are transliterated, not dropped
    ("Wrocław", "wroclaw"), ("Łódź", "lodz"), ("Diyarbakır", "diyarbakir"), ("Tromsø", "tromso"),
    ("Großbeeren", "grossbeeren"), ("Næstved", "naestved"), ("Đà Nẵng", "da_nang"), ("Reykjavík", "reykjavik"),
    ("Þórshöfn", "thorshofn"), ("Œuilly", "oeuilly"), ("Buôn Ma Thuột", "buon_ma_thuot"),
])
def test_slugify(raw, slug):
    assert slugify(raw) == slug


def test_region_of_a_city_with_a_non_decomposable_letter_keeps_it_transliterated():
    """GeoNames spells Wrocław with 'ł': the region is 'wroclaw' (OpenEarthMap's spelling), not 'wrocaw'."""
    assert locate(17.0333, 51.1).region == "wroclaw"


def test_out_of_range_coordinates_are_an_error():
    with pytest.raises(ValueError, match="out of range"):
        locate(200.0, 10.0)


@pytest.mark.parametrize(
    "lon, lat, region",
    [
        (-95.697, 29.969, "houston"),        # Cypress TX, 40 km from Houston (was "cypress")
        (-95.209, 29.691, "houston"),        # Pasadena TX
        (-115.245, 36.108, "las_vegas"),     # Spring Valley NV (was "spring_valley")
        (-115.147, 36.097, "las_vegas"),     # Paradise NV, the Strip
        (-97.679, 30.508, "austin"),         # Round Rock TX
        (-77.130, -12.052, "lima"),          # Callao
        (2.241, 48.835, "paris"),            # Boulogne-Billancourt
        (-46.533, -23.463, "sao_paulo"),     # Guarulhos
        (-118.145, 34.148, "los_angeles"),   # Pasadena CA
        (135.754, 35.021, "kyoto"),          # not Osaka: less than twice as populous
        (135.183, 34.691, "kobe"),
        (32.478, 15.645, "omdurman"),        # next to Khartoum, about as big
        (-122.714, 38.440, "santa_rosa"),    # 80 km from San Francisco: beyond its reach
    ],
)
def test_region_is_the_metro_not_the_suburb(lon, lat, region):
    assert locate(lon, lat).region == region


@pytest.mark.parametrize("aoi, lon, lat", [("Vegas", -115.245, 36.108), ("RIO", -43.2, -22.9)])
def test_spacenet_aoi_and_the_gazetteer_give_one_region(tmp_path, aoi, lon, lat):
    # a SpaceNet AOI_2_Vegas chip and a scene of another source in the same metro (no region option) share
    # one region, las_vegas: sampling and splits see one metro, not "vegas" beside "las_vegas"
    from pipeline.sources.adapters.spacenet import SpaceNetAdapter
    from pipeline.sources.config import parse_sources

    chip = tmp_path / f"AOI_2_{aoi}_Train" / "RGB-PanSharpen" / f"RGB-PanSharpen_AOI_2_{aoi}_img1.tif"
    chip.parent.mkdir(parents=True)
    chip.write_bytes(b"")  # the adapter lists files; it does not open them
    (src,) = parse_sources({"sources": [{"name": "sn", "kind": "spacenet", "location": str(tmp_path),
                                         "license": "CC-BY-SA-4.0", "attribution": "SpaceNet"}]},
                           tmp_path / "sources.yaml")
    (scene,) = SpaceNetAdapter().scenes(tmp_path, src)
    from_adapter = locate(lon, lat, region_hint=scene.region_hint).region
    from_gazetteer = locate(lon, lat).region
    assert from_adapter == from_gazetteer == {"Vegas": "las_vegas", "RIO": "rio_de_janeiro"}[aoi]


def test_a_hint_without_latin_letters_falls_back_to_the_coordinates():
    # local folders named in other scripts: the slug is empty, so the place names the region, not one shared
    # region "unknown" for every such folder
    assert locate(139.69, 35.69, region_hint="東京").region == "tokyo"
    assert locate(37.62, 55.75, region_hint="Москва").region == "moscow"
    assert locate(139.69, 35.69, region_hint="Tokyo-23").region == "tokyo_23"  # a hint with letters still wins
