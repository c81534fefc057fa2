"""The release card (``README.md`` at a release's root, :mod:`pipeline.release.card`): what a dataset hub shows and
what someone who re-publishes the release must know about its licences."""
from __future__ import annotations

import copy
import hashlib
import re
from collections import Counter

import pytest
import yaml

from pipeline.dataset.stats.plots import PNG_FILES
from pipeline.licences import hub_license, licence_terms
from pipeline.release.card import CARD, FIGURES, release_card
from pipeline.release.validate.report import validate_release
from tests.helpers_outputs import demo_release, manifest_of


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return demo_release(tmp_path_factory)


def _front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _section(card: str, title: str) -> str:
    return card.split(f"\n{title}\n", 1)[1].split("\n#", 1)[0]


def test_a_built_release_has_its_card_listed_and_checked(release):
    manifest = manifest_of(release)
    card = (release / CARD).read_text()
    assert card == release_card(manifest)  # written from the manifest the release carries
    entry = next(e for e in manifest["files"] if e["path"] == CARD)
    assert entry["sha256"] == hashlib.sha256((release / CARD).read_bytes()).hexdigest()
    front = _front(card)
    assert front["license"] == "cc0-1.0" and "license_name" not in front  # the demo: one licence, the hub's id
    assert front["task_categories"] == ["image-segmentation"] and front["size_categories"] == ["n<1K"]
    images = manifest["images"]
    summary = manifest["summary"]
    assert f"{len(images)} images of 1024x1024 px at 0.3 / 0.5 m" in card
    assert (f"in {len(summary['regions'])} regions of {len(summary['countries'])} countries on "
            f"{len(summary['continents'])} continents") in card
    splits = Counter(im["split"] for im in images)
    for split in ("train", "val", "test"):
        assert f"| {split} | {splits[split]} | `{split}.txt` |" in card
    rows = [line for line in _section(card, "## Classes").splitlines() if line.startswith("| ") and "%" in line
            and not line.startswith("| value")]
    assert len(rows) == 8 and "| 8 | building | `#de1f07` |" in card
    assert sum(float(r.split("|")[4].strip(" %")) for r in rows) == pytest.approx(100.0, abs=0.05)
    assert f"| demo | demo | {len(images)} | CC0-1.0 (synthetic) |" in card
    assert "no conditions (public domain dedication)" in _section(card, "### CC0-1.0 (synthetic)")
    assert "## Citation" not in card  # the synthetic demo cites no upstream dataset
    one = copy.deepcopy(manifest)
    one["images"] = one["images"][:1]
    one["summary"] = {k: v for k, v in one["summary"].items() if k not in ("regions", "countries", "continents")}
    assert "1 image of 1024x1024 px" in release_card(one)
    assert "in 1 region of 1 country on 1 continent, " in release_card(one)
    figures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", card)
    assert figures == [f"stats/{name}" for name, _ in FIGURES] and all((release / f).is_file() for f in figures)
    assert {name for name, _ in FIGURES} <= set(PNG_FILES)


def test_an_edited_card_fails_validation(release, tmp_path):
    import shutil

    copy_dir = tmp_path / "copy"
    shutil.copytree(release, copy_dir, copy_function=shutil.copy2)
    (copy_dir / CARD).write_text((copy_dir / CARD).read_text() + "\nedited\n")
    problems = validate_release(copy_dir)
    assert any(p.startswith(f"{CARD}: ") and "sha256" in p for p in problems), problems


def _mixed(manifest: dict) -> dict:
    """The demo manifest with its first image from an xBD-like source and the next two from an ND one."""
    mixed = copy.deepcopy(manifest)
    for i, (name, licence) in enumerate((("xbd", "CC BY-NC-SA 4.0"), ("nd", "CC BY-ND 4.0"), ("nd", "CC BY-ND 4.0"))):
        mixed["images"][i].update(source=name, license=licence)
    mixed["images"][0]["upstream_split"] = mixed["images"][0]["split"]  # as a benchmark's image (openearthmap kind)
    mixed["sources"] += [{"name": "nd", "kind": "local", "license": "CC BY-ND 4.0", "attribution": "Someone | Ltd"},
                         {"name": "xbd", "kind": "xbd", "license": "CC BY-NC-SA 4.0", "attribution": "Gupta et al.",
                          "citation": "Gupta, R. et al. (2019). xBD: A Dataset for Assessing Building Damage."}]
    return mixed


def test_a_release_of_several_licences_says_what_each_allows(release):
    manifest = _mixed(manifest_of(release))
    card = release_card(manifest)
    front = _front(card)
    assert (front["license"], front["license_name"], front["license_link"]) == ("other", "per-image",
                                                                               "README.md#licences")
    licences = _section(card, "## Licences")
    assert "This release mixes 3 licences" in licences and "index.parquet" in licences
    n = len(manifest["images"])
    assert f"{n - 3} images, from `demo` ({n - 3})" in _section(card, "### CC0-1.0 (synthetic)")
    nc = _section(card, "### CC BY-NC-SA 4.0")
    assert nc.startswith("\n1 image, from `xbd` (1)") and "non-commercial use only" in nc
    assert "share adaptations of these images under the same licence" in nc
    nd = _section(card, "### CC BY-ND 4.0")
    assert "2 images, from `nd` (2)" in nd and "no derivatives" in nd and "check with the licensor" in nd
    assert "| nd | local | 2 | CC BY-ND 4.0 | Someone \\| Ltd |" in card  # a table cell cannot end early
    assert _section(card, "## Citation").strip().splitlines() == [
        "Cite the datasets this release is made from:", "",
        "- Gupta, R. et al. (2019). xBD: A Dataset for Assessing Building Damage. (source `xbd`)"]
    assert "\n1 image of a source benchmark keeps its benchmark split (`upstream_split`" in _section(card, "## Splits")
    assert "continues release" not in card
    lineage = {**manifest, "previous_release": "v0", "retired": [{"key": "a~b~c", "id": "x_1"}]}
    assert ("It continues release `v0`: every image of it this release ships keeps its id and split; 1 image of its "
            "lineage no longer shipped is listed under `retired`") in release_card(lineage)
    assert release_card(manifest) == card  # deterministic


def test_text_from_a_catalog_cannot_reshape_the_card(release):
    """A licence or attribution comes from a source's catalog (a STAC item's ``license``, an OpenAerialMap record's
    provider): its line breaks and pipes stay inside its heading or table cell."""
    manifest = copy.deepcopy(manifest_of(release))
    hostile = "CC BY 4.0\n\n## Injected section\n| a | table |"
    manifest["images"][0].update(license=hostile)
    manifest["sources"][0]["attribution"] = "Someone\n# Title | x"
    card = release_card(manifest)
    headings = [line for line in card.splitlines() if line.startswith("#")]
    assert headings == [f"# {manifest['release']}", "## Classes", "## Splits", "## Figures", "## Sources",
                        "## Licences", "### CC BY 4.0 ## Injected section | a | table |", "### CC0-1.0 (synthetic)",
                        "## Files", "## How it was made"]
    assert "| Someone # Title \\| x |" in card


@pytest.mark.parametrize("texts, hub", [
    ({"CC BY-NC-SA 4.0"}, "cc-by-nc-sa-4.0"), ({"CC-BY 4.0"}, "cc-by-4.0"), ({"ODbL"}, "odbl"),
    ({"CC0-1.0 (synthetic)"}, "cc0-1.0"), ({"CC BY 4.0", "CC BY-SA 4.0"}, "other"),
    ({"Inria Aerial Image Labeling terms"}, "other"), ({""}, "other"),
])
def test_hub_license(texts, hub):
    assert hub_license(texts) == hub


def test_licence_terms():
    assert licence_terms("CC BY 4.0") == ["credit the source (its attribution under Sources)"]
    assert "non-commercial use only" in licence_terms("CC-BY-NC 4.0")
    assert "share adapted databases under the ODbL" in licence_terms("ODbL")
    assert licence_terms("public domain") == ["no conditions (public domain dedication)"]
    assert "does not recognise" in licence_terms("Inria Aerial Image Labeling terms")[0]
    assert "does not recognise" in licence_terms(None)[0]
