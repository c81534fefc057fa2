"""The release browser (``<release>/viewer/``, ``python -m pipeline browse``): written by the build at the
default settings, opened from file:// in a real headless Chromium with no network, every released image
shown with its split, filters from the URL and from the page's controls, one map marker per region, the
rejected and pending tiles with their reasons; thumbnails from the COG overviews, cached by checksum,
within the size budget.  Screenshots are saved under ``tests/artifacts/`` (ignored by git)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from pipeline.constants import CLASS_COLORS
from pipeline.errors import ThumbnailError
from pipeline.release.validate.report import validate_release
from pipeline.release.viewer import ViewerError, thumbs, write_viewer
from tests.browser import DevTools, dump_dom, needs_chromium, screenshot
from tests.helpers_build import ROOT, luigi_cmd, pipeline_env, reference_build, release_dir, run_luigi

ARTIFACTS = ROOT / "tests" / "artifacts"
#: The issue's budget: the whole viewer within about 25 KB per image.
BUDGET_PER_IMAGE = 25 * 1024


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The shared small demo release (13 regions of one image each), built by the luigi CLI with the
    default ``viewer = true``."""
    return release_dir(reference_build(tmp_path_factory))


@pytest.fixture(scope="module")
def manifest(release) -> dict:
    return json.loads((release / "manifest.json").read_text())


def _geotiff(path: Path, size: int, gsd: float, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(40, 200, (24, 24, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=rasterio.Affine(gsd, 0, 500000.0, 0, -gsd, 5000000.0), tiled=True,
                       compress="deflate") as ds:
        ds.write(img.transpose(2, 0, 1))


@pytest.fixture(scope="module")
def pending_release(tmp_path_factory) -> Path:
    """A release of one local scene without labels (its tile is pending), one 0.8 m scene (rejected) and one
    labelled scene (so that the release holds an image), built with ``--PipelineConfig-viewer false``; no viewer
    is written."""
    base = tmp_path_factory.mktemp("pending")
    _geotiff(base / "imagery" / "town" / "town.tif", 1024, 0.5, seed=4)  # not the labelled scene's copy
    _geotiff(base / "imagery" / "town" / "coarse.tif", 256, 0.8)
    _geotiff(base / "imagery" / "field" / "field.tif", 1024, 0.5)  # labelled, so the release is not empty
    classes = np.repeat(np.arange(1, 9, dtype=np.uint8), 128)[None, :].repeat(1024, axis=0)
    with rasterio.open(base / "imagery" / "field" / "field.tif") as src:
        profile = {**src.profile, "count": 1}
    (base / "imagery" / "labels" / "field").mkdir(parents=True)
    with rasterio.open(base / "imagery" / "labels" / "field" / "field.tif", "w", **profile) as ds:
        ds.write(classes, 1)
    (base / "sources.yaml").write_text(f"""
sources:
  - name: town
    kind: local
    location: {base / 'imagery'}
    license: CC BY 4.0
    attribution: test imagery
""")
    proc = run_luigi(luigi_cmd(base / "data", base / "sources.yaml", "--PipelineConfig-viewer", "false",
                               release="p1", split_trials=20))
    assert proc.returncode == 0, f"build failed:\n{proc.stdout}\n{proc.stderr}"
    return release_dir(base / "data", "p1")


class _Cards(HTMLParser):
    """Image cards (``article.card``: data attributes + split badge text), map markers and tables of a DOM."""

    def __init__(self):
        super().__init__()
        self.cards: dict[str, dict] = {}
        self.markers: dict[str, int] = {}
        self.srcs: list[str] = []
        self._badge: str | None = None
        self._current = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "article" and "card" in classes:
            self.cards[a["data-id"]] = {**a, "badge": None}
            self._current = a["data-id"]
        elif tag == "span" and "split" in classes and self._current and self.cards[self._current]["badge"] is None:
            self._badge = self._current
        elif tag == "g" and "marker" in classes:
            self.markers[a["data-region"]] = int(a["data-n"])
        if tag in ("img", "script", "link") and (a.get("src") or a.get("href")):
            self.srcs.append(a.get("src") or a.get("href"))

    def handle_data(self, data):
        if self._badge is not None and data.strip():
            self.cards[self._badge]["badge"] = data.strip()
            self._badge = None


def _parse(dom: str) -> _Cards:
    p = _Cards()
    p.feed(dom)
    return p


def _url(release: Path, suffix: str = "") -> str:
    return (release / "viewer" / "index.html").resolve().as_uri() + suffix


def test_build_writes_the_viewer_and_the_release_still_validates(release, manifest):
    viewer = release / "viewer"
    for name in ("index.html", "viewer.js", "viewer.css", "data.js", "world.js", "LICENSE-world-atlas.txt"):
        assert (viewer / name).is_file(), name
    assert validate_release(release) == []
    assert not [f for f in manifest["files"] if f["path"].startswith("viewer/")]  # derived, not checksummed
    page = "".join((viewer / n).read_text() for n in ("index.html", "viewer.js", "viewer.css"))
    assert "http://" not in page and "https://" not in page and "//cdn" not in page  # nothing to fetch


@needs_chromium
def test_browser_shows_every_image_with_its_split_and_one_marker_per_region(release, manifest, tmp_path):
    dom_text = dump_dom(_url(release), tmp_path / "profile", window=(1400, 4000))
    assert '<a href="../README.md">release card</a>' in dom_text  # the release card, first of the release's files
    dom = _parse(dom_text)
    want = {im["id"]: im["split"] for im in manifest["images"]}
    assert {i: c["data-split"] for i, c in dom.cards.items()} == want
    assert {i: c["badge"] for i, c in dom.cards.items()} == want
    regions = {}
    for im in manifest["images"]:
        regions[im["region"]] = regions.get(im["region"], 0) + 1
    assert dom.markers == regions
    local = [s for s in dom.srcs if not s.startswith("#")]
    assert all("://" not in s for s in local), local  # relative links only: works offline, from any folder
    for src in local:
        assert (release / "viewer" / src.split("#")[0]).resolve().exists(), src
    shot = screenshot(_url(release), ARTIFACTS / "viewer-small-release.png", tmp_path / "profile")
    print(f"\nscreenshot: {shot}")


@needs_chromium
@pytest.mark.parametrize("suffix, keep", [
    ("#continent=Asia", lambda im: im["continent"] == "Asia"),
    ("#split=test", lambda im: im["split"] == "test"),
    ("?split=train&class=6", lambda im: im["split"] == "train" and im["class_pixels"]["6"] > 0),
    ("#source=demo&region=lima", lambda im: im["region"] == "lima"),
    ("#license=CC0-1.0%20(synthetic)&continent=Asia", lambda im: im["continent"] == "Asia"),
    ("#license=CC-BY-NC-4.0", lambda im: False),  # the demo's images are all CC0
])
def test_filter_from_the_url_is_applied_on_load(release, manifest, tmp_path, suffix, keep):
    dom_text = dump_dom(_url(release, suffix), tmp_path / "profile")
    dom = _parse(dom_text)
    expected = {im["id"] for im in manifest["images"] if keep(im)}
    assert set(dom.cards) == expected
    assert all(c["data-split"] == next(im["split"] for im in manifest["images"] if im["id"] == i)
               for i, c in dom.cards.items())
    assert f"{len(expected)} of {len(manifest['images'])} images shown" in dom_text
    if not expected:
        assert "No image matches these filters." in dom_text
    assert len(dom.markers) == len({im["region"] for im in manifest["images"]})  # the map keeps every region


@needs_chromium
def test_marker_click_and_filter_controls_in_the_page(release, manifest, tmp_path):
    browser = DevTools(tmp_path / "profile")
    try:
        browser.open(_url(release))
        shown = "[...document.querySelectorAll('article.card')].map(c => c.dataset.id).sort()"
        assert browser.js(shown) == sorted(im["id"] for im in manifest["images"])
        target = sorted(manifest["images"], key=lambda im: im["region"])[-1]
        browser.js(f"document.querySelector('#map .marker[data-region=\"{target['region']}\"] circle')"
                   ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
        browser.js("new Promise(r => setTimeout(r, 30))")
        assert browser.js(shown) == sorted(im["id"] for im in manifest["images"] if im["region"] == target["region"])
        assert browser.js("location.hash") == f"#region={target['region']}"
        browser.js("document.getElementById('reset').click()")
        browser.js("const s = document.querySelector('select[data-k=continent]'); s.value = 'Europe';"
                   "s.dispatchEvent(new Event('change', {bubbles: true}))")
        browser.js("new Promise(r => setTimeout(r, 30))")
        assert browser.js(shown) == sorted(im["id"] for im in manifest["images"] if im["continent"] == "Europe")
        licences = "[...document.querySelectorAll('select[data-k=license] option')].map(o => o.value)"
        assert browser.js(licences) == ["", "CC0-1.0 (synthetic)"]  # a filter by licence: "all", then each one
        browser.js("document.getElementById('overlay').click()")
        assert browser.js("getComputedStyle(document.querySelector('img.ov')).display") == "none"
        browser.js(f"location.hash = 'image={target['id']}'")
        browser.js("new Promise(r => setTimeout(r, 30))")
        entry = json.loads(browser.js("document.getElementById('entry').textContent"))
        assert entry == target  # the image's manifest entry, in full
        # each detail image once the browser has fetched and decoded it (a busy machine takes longer than the
        # 30 ms above to load the two files); one that cannot be decoded gives false
        loaded = ("Promise.all([...document.querySelectorAll('#detail img')].map(i => i.decode()"
                  ".then(() => i.complete && i.naturalWidth, () => false)))")
        assert browser.js(loaded) == [thumbs.THUMB_SIZE, thumbs.THUMB_SIZE]  # thumbnail and overlay decode
        browser.png(ARTIFACTS / "viewer-detail.png")
    finally:
        browser.close()


@needs_chromium
def test_rejected_and_pending_tabs_list_the_reasons(pending_release, tmp_path):
    assert not (pending_release / "viewer").exists()  # --PipelineConfig-viewer false
    proc = subprocess.run([sys.executable, "-m", "pipeline", "browse", str(pending_release)], cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Viewer:" in proc.stdout and (pending_release / "viewer" / "index.html").is_file()
    assert validate_release(pending_release) == []
    rejects = list(csv.DictReader((pending_release / "rejects.csv").open()))
    pending = list(csv.DictReader((pending_release / "pending.csv").open()))
    assert rejects and pending
    dom = dump_dom(_url(pending_release, "#tab=rejects"), tmp_path / "profile")
    assert 'id="tab-rejects">' in dom and 'id="tab-images" hidden' in dom
    for row in rejects:
        assert row["reason"] in dom and row["file"] in dom
    assert "coarser than 0.5 m" in dom
    dom = dump_dom(_url(pending_release, "#tab=pending"), tmp_path / "profile")
    for row in pending:  # each with its own reason (it used to be one fixed text, whatever held the tile back)
        assert row["key"] in dom and f"todo/{row['todo']}" in dom and row["reason"] in dom
    assert dom.count("awaiting annotation") == len(pending)
    screenshot(_url(pending_release, "#tab=pending"), ARTIFACTS / "viewer-pending.png", tmp_path / "profile")


def test_browse_refuses_a_folder_without_manifest(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "browse", str(tmp_path)], cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{tmp_path / 'manifest.json'}: no manifest.json" in proc.stderr
    assert not (tmp_path / "viewer").exists()


def test_browse_never_replaces_the_release_itself(release):
    with pytest.raises(ViewerError, match="would replace the release folder"):
        write_viewer(release, release)
    with pytest.raises(ViewerError):
        write_viewer(release, release.parent)
    assert (release / "manifest.json").is_file()


def test_thumbnails_come_from_the_overviews(release, manifest):
    im = manifest["images"][0]
    for kind in ("image", "label"):
        path = release / im[kind]
        with rasterio.open(path) as ds:
            full = ds.width
        level, width = thumbs.overview_level(path, thumbs.THUMB_SIZE)
        assert level is not None and thumbs.THUMB_SIZE <= width < full
        data, decoded = thumbs.read_reduced(path, thumbs.THUMB_SIZE, label=kind == "label")
        assert decoded == width and data.shape[1:] == (thumbs.THUMB_SIZE, thumbs.THUMB_SIZE)
    overlay = cv2.imread(str(release / "viewer" / "thumbs" / thumbs.thumb_name(im["sha256_label"], "label")),
                         cv2.IMREAD_UNCHANGED)
    assert overlay.shape[:2] == (thumbs.THUMB_SIZE, thumbs.THUMB_SIZE)
    if overlay.shape[2] == 3:  # WebP stores no alpha channel when no pixel is unlabelled (transparent)
        overlay = np.dstack([overlay, np.full(overlay.shape[:2], 255, np.uint8)])
    palette = {(b, g, r) for r, g, b in CLASS_COLORS.values()}
    opaque = overlay[overlay[..., 3] == 255][:, :3]
    assert {tuple(int(v) for v in px) for px in np.unique(opaque, axis=0)} <= palette  # never interpolated
    assert set(np.unique(overlay[..., 3])) <= {0, 255}
    if im["unlabelled_pixels"] == 0:
        assert (overlay[..., 3] == 255).all()


def test_thumbnail_cache_regenerates_only_what_changed(release, manifest, tmp_path):
    n = len(manifest["images"])
    first = write_viewer(release, tmp_path / "a")
    assert (first["made"], first["reused"]) == (2 * n, 0)
    with rasterio.open(release / manifest["images"][0]["image"]) as ds:
        assert thumbs.THUMB_SIZE <= first["decoded_max"] < ds.width  # every tile read from an overview
    again = write_viewer(release, tmp_path / "a")
    assert (again["made"], again["reused"]) == (0, 2 * n)
    elsewhere = write_viewer(release, tmp_path / "b", reuse=[tmp_path / "a"])
    assert (elsewhere["made"], elsewhere["reused"]) == (0, 2 * n)
    gone = tmp_path / "a" / "thumbs" / thumbs.thumb_name(manifest["images"][0]["sha256_image"], "image")
    gone.unlink()
    third = write_viewer(release, tmp_path / "a")
    assert (third["made"], third["reused"]) == (1, 2 * n - 1)
    assert gone.is_file()
    # the cache key is the tile checksum: another checksum is another thumbnail
    assert thumbs.thumb_name("0" * 64, "image") != thumbs.thumb_name("1" * 64, "image")


def test_viewer_size_within_budget(release, manifest):
    viewer = release / "viewer"
    total = sum(p.stat().st_size for p in viewer.rglob("*") if p.is_file())
    per_image = total / len(manifest["images"])
    print(f"\nviewer: {total / 1024:.0f} KiB for {len(manifest['images'])} images, "
          f"{per_image / 1024:.1f} KiB per image")
    assert per_image <= BUDGET_PER_IMAGE
    shots = [p.stat().st_size for p in (viewer / "thumbs").iterdir()]
    assert len(shots) == 2 * len(manifest["images"]) and sum(shots) / len(manifest["images"]) <= 16 * 1024


def test_world_map_asset_matches_the_page_projection():
    from pipeline.release.viewer import worldmap

    assets = ROOT / "pipeline" / "release" / "viewer" / "assets"
    world = json.loads((assets / "world-110m.json").read_text())
    assert world["view"] == [360, worldmap.LAT_TOP - worldmap.LAT_BOTTOM]
    assert f"const LAT_TOP = {worldmap.LAT_TOP:g};" in (assets / "viewer.js").read_text()
    assert (assets / "world-110m.json").stat().st_size <= 60 * 1024
    assert worldmap.project(-180, worldmap.LAT_TOP) == (0, 0)
    # a ring that crosses the antimeridian is made continuous before clipping (no stripe across the map)
    assert [p[0] for p in worldmap._unwrap([(179.0, 0.0), (-179.0, 1.0), (-178.0, 0.0)])] == [179.0, 181.0, 182.0]


def test_thumbnails_made_ahead_skip_an_unreadable_tile_and_the_viewer_names_it(tmp_path):
    """The release stage makes thumbnails before validation with ``skip_errors``: an unreadable tile is left
    out (counted), not fatal; without it, the viewer's own call names the file."""
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    job = thumbs.Job("image", bad, "ab" * 32, thumbs.thumb_name("ab" * 32, "image"))
    counts = thumbs.provide([job], tmp_path / "ahead", colors=CLASS_COLORS, skip_errors=True)
    assert (counts["made"], counts["failed"]) == (0, 1) and not any((tmp_path / "ahead").iterdir())
    with pytest.raises(ThumbnailError, match="broken.tif"):
        thumbs.provide([job], tmp_path / "viewer", colors=CLASS_COLORS)
