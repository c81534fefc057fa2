"""Per-source options of every kind in sources.yaml: region / regions overrides and the imagery period,
validated with named errors and applied to the scenes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.errors import SourcesError
from pipeline.sources.adapters import UNKNOWN_ACQUISITION, acquired_range
from pipeline.sources.adapters.local import LocalAdapter
from pipeline.sources.config import KINDS, parse_sources
from pipeline.sources.options import scene_region

LOCATIONS = {"demo": "", "spacenet": "s3://bucket/aoi/", "openaerialmap": "https://api.example.org"}


def _parse(kind: str, **options):
    entry = {"name": "src", "kind": kind, "location": LOCATIONS.get(kind, "/data/x"), "license": "CC0",
             "attribution": "t", "options": options}
    return parse_sources({"sources": [entry]}, Path("sources.yaml"))[0]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_accepts_region_regions_and_acquired_range(kind):
    src = _parse(kind, region="las_vegas", acquired_range=["2015-01-01", "2016-12-31"])
    assert scene_region(src.options, "anything") == "las_vegas"
    assert acquired_range(src) == ["2015-01-01", "2016-12-31"]
    src = _parse(kind, regions={"aoi_2_*": "las_vegas", "*paris*": "paris"})
    assert scene_region(src.options, "AOI_2_vegas_img7") == "las_vegas"
    assert scene_region(src.options, "aoi_3_paris_img1") == "paris"
    assert scene_region(src.options, "other") is None


@pytest.mark.parametrize("options, message", [
    ({"region": "Las Vegas"}, "key 'options.region': 'Las Vegas' is not a region name (lower-case letters and "
                              "digits joined by single '_', e.g. 'las_vegas')"),
    ({"regions": {"aoi_*": "Las-Vegas"}}, "key 'options.regions.aoi_*': 'Las-Vegas' is not a region name"),
    ({"region": "a", "region_override": "b"}, "'options.region' and 'options.region_override' are the same option"),
    ({"acquired_range": ["2019-01-01"]}, "key 'options.acquired_range' must be two ISO dates"),
    ({"acquired_range": ["2019-01-01", "2018-01-01"]}, "start 2019-01-01 is after end 2018-01-01"),
    ({"regions": ["x"]}, "key 'options.regions' must be dict"),
])
def test_bad_region_options_are_named_errors(options, message):
    with pytest.raises(SourcesError, match="^sources.yaml: source 'src': ") as err:
        _parse("local", **options)
    assert message in str(err.value)


def test_acquired_range_defaults():
    assert acquired_range(_parse("xbd")) == ["2011-01-01", "2019-12-31"]  # xBD's documented period
    assert acquired_range(_parse("local")) == list(UNKNOWN_ACQUISITION)


def test_regions_pattern_overrides_the_folder_hint_of_a_local_source(tmp_path: Path):
    for rel in ("vegas/img1.tif", "vegas/img2.tif"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(tmp_path / rel, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8",
                           crs="EPSG:32611", transform=from_origin(660000, 4000000, 0.3, 0.3)) as ds:
            ds.write(np.zeros((3, 8, 8), np.uint8))
    src = _parse("local", regions={"*img1": "las_vegas"})
    got = {s.scene_id: s.region_hint for s in LocalAdapter().scenes(tmp_path, src)}
    assert got == {"vegas-img1": "las_vegas", "vegas-img2": "vegas"}
    src = _parse("local", region="las_vegas")
    assert {s.region_hint for s in LocalAdapter().scenes(tmp_path, src)} == {"las_vegas"}


@pytest.mark.parametrize("kind", KINDS)
def test_licences_choose_scenes_without_touching_what_is_processed(kind):
    """``options.licences`` (any kind) is left out when unset (a source's digests are as before it existed), is
    checked, and keys the catalog; the scenes' work keeps its digests.  The raw folder keeps its digest too,
    but for the kinds whose fetch refuses images by it (STAC and OpenAerialMap): theirs changes, and what it
    shares with the earlier folder (``made_by.content``, labels=False) does not, so it starts from that one."""
    from pipeline.sources.object_store import source_digest
    from pipeline.sources.options import FETCH_SELECT_KINDS
    from tasks.plan import source_digests

    plain = _parse(kind)
    assert "licences" not in plain.options
    chosen = _parse(kind, licences=["CC BY 4.0", "CC-BY-SA-4.0"])
    assert chosen.options["licences"] == ["CC BY 4.0", "CC-BY-SA-4.0"]
    at_fetch = kind in FETCH_SELECT_KINDS
    assert (source_digest(chosen) != source_digest(plain)) == at_fetch
    assert source_digest(chosen, labels=False) == source_digest(plain, labels=False)
    assert source_digest(chosen, labels=False, pixels=False) == source_digest(plain, labels=False, pixels=False)
    codes = {"fetch": "f1", "catalog": "c1"}
    (raw_a, cat_a), (raw_b, cat_b) = source_digests(plain, codes), source_digests(chosen, codes)
    assert (raw_a != raw_b) == at_fetch and cat_a != cat_b
    assert source_digests(chosen, codes, labels=False) == source_digests(plain, codes, labels=False)  # scene keys
    for bad in ([], [""], ["CC BY 4.0", 3]):
        with pytest.raises(SourcesError, match=r"source 'src': key 'options.licences' must list the licences"):
            _parse(kind, licences=bad)
    with pytest.raises(SourcesError, match=r"key 'options.licences' must be list"):
        _parse(kind, licences="CC BY 4.0")


def test_licence_refused_compares_licences_not_spellings():
    from pipeline.licences import licence_refused

    assert licence_refused("CC-BY-4.0", ["CC BY 4.0"]) is None and licence_refused("CC-BY 4.0", ["cc-by-4.0"]) is None
    assert licence_refused("Inria Aerial Image Labeling terms", ["inria aerial  image labeling TERMS"]) is None
    assert licence_refused("anything", None) is None
    assert licence_refused("CC-BY-NC-4.0", ["CC BY 4.0", "CC0"]) == (
        "licence 'CC-BY-NC-4.0' is not one of options.licences (CC BY 4.0, CC0)")
    assert licence_refused("", ["CC0"]) == "licence '(none stated)' is not one of options.licences (CC0)"
