"""Write a release's static browser: ``<release>/viewer/`` (``python -m pipeline browse <release>``).

The viewer depends only on files of the release folder: ``manifest.json`` (images, classes, selection
record, sources), ``rejects.csv``, ``pending.csv``, ``stac/items/<id>.json`` and the image and label
tiles.  It writes::

    viewer/index.html  viewer.js  viewer.css     the page (vanilla JavaScript, no network, no CDN)
    viewer/data.js                               window.OEM_VIEWER = {...}: the page's data (fetch() of
                                                 local JSON is blocked on file://, a script is not)
    viewer/world.js                              window.OEM_WORLD: the offline world map (worldmap.py)
    viewer/thumbs/<sha256>-<spec>.webp           image thumbnails and label overlays (thumbs.py)
    viewer/LICENSE-world-atlas.txt               licence of the vendored map outline

The folder is derived: it is not listed in the manifest's ``files`` (it is made from the checksummed
files and can be rebuilt from them at any time), and ``validate`` ignores it.  It is written atomically
(a temporary folder renamed into place); thumbnails of unchanged tiles are reused from the viewer being
replaced and from the previous release's viewer.  Links are relative, so the release folder can be
moved, copied or published as a whole.
"""
from __future__ import annotations

import csv
import json
import os
import resource
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.errors import ViewerError
from pipeline.release.card import CARD
from pipeline.release.viewer import thumbs

ASSETS = ("index.html", "viewer.js", "viewer.css", "LICENSE-world-atlas.txt")
MANIFEST = "manifest.json"


def _asset(name: str) -> bytes:
    return resources.files("pipeline.release.viewer").joinpath("assets", name).read_bytes()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _selection_reasons(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Image key -> ``{"reason", "predicted_loss"}`` from the manifest's ``selection`` record."""
    out = {}
    for region in (manifest.get("selection") or {}).get("regions", {}).values():
        for entry in region.get("selected", []):
            out[entry["id"]] = {"reason": entry.get("reason"), "predicted_loss": entry.get("predicted_loss")}
    return out


def _regions(images: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per region: name, country, continent, image count and mean tile centre (lon, lat)."""
    acc: dict[str, dict[str, Any]] = {}
    for im in images:
        r = acc.setdefault(im["region"], {"name": im["region"], "country": im.get("country"),
                                          "continent": im.get("continent"), "n": 0, "lon": 0.0, "lat": 0.0})
        w, s, e, n = im["bounds_lonlat"]
        r["n"] += 1
        r["lon"] += (w + e) / 2
        r["lat"] += (s + n) / 2
    for r in acc.values():
        r["lon"], r["lat"] = round(r["lon"] / r["n"], 4), round(r["lat"] / r["n"], 4)
    return sorted(acc.values(), key=lambda r: r["name"])


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def image_jobs(release: Path, images: Sequence[dict[str, Any]]) -> list[thumbs.Job]:
    """The thumbnails of the manifest records ``images`` of the release folder ``release`` (image, label)."""
    jobs = []
    root = os.fspath(release)
    for im in images:
        for kind in ("image", "label"):
            sha = im[f"sha256_{kind}"]
            jobs.append(thumbs.Job(kind, f"{root}/{im[kind]}", sha, thumbs.thumb_name(sha, kind)))
    return jobs


def viewer_data(release: Path, manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """The page's data (``window.OEM_VIEWER``): release summary, classes, regions, every image's manifest
    record with its selection reason, thumbnail names and links, rejects and pending tiles."""
    reasons = _selection_reasons(manifest)
    root = _rel(release, out)
    items = thumbs.file_names(release / "stac" / "items")  # one listing, not a stat per image
    images = []
    for im in manifest["images"]:
        sel = reasons.get(im.get("key") or "", {})
        images.append({
            "record": im, "reason": sel.get("reason"), "loss": sel.get("predicted_loss"),
            "thumb": f"thumbs/{thumbs.thumb_name(im['sha256_image'], 'image')}",
            "overlay": f"thumbs/{thumbs.thumb_name(im['sha256_label'], 'label')}",
            "stac": f"stac/items/{im['id']}.json" if f"{im['id']}.json" in items else None,
        })
    return {
        "release": manifest.get("release"), "previous_release": manifest.get("previous_release"),
        "code_version": (manifest.get("created_with") or {}).get("code_version"),
        "root": root, "classes": manifest.get("classes", []), "sources": manifest.get("sources", []),
        "regions": _regions(manifest["images"]), "images": images,
        "rejects": _csv_rows(release / "rejects.csv"), "pending": _csv_rows(release / "pending.csv"),
        "thumb_size": thumbs.THUMB_SIZE, "card": (release / CARD).is_file(),  # none in a release made before it
    }


def _script(name: str, obj: Any) -> str:
    text = atomic.record_bytes(obj).decode().replace("</", "<\\/")
    return f"window.{name} = {text};\n"


def load_manifest(release: Path) -> dict[str, Any]:
    path = release / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ViewerError(str(path), "no manifest.json: not a release folder") from None
    except (OSError, ValueError) as exc:
        raise ViewerError(str(path), f"cannot read the manifest: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("images"), list):
        raise ViewerError(str(path), "the manifest has no 'images' list")
    return manifest


def class_colors(manifest: dict[str, Any]) -> dict[int, tuple[int, ...]]:
    """Class id -> RGB from the manifest's ``classes`` (``"color": "800000"``), the label overlay palette."""
    try:
        return {int(c["id"]): tuple(bytes.fromhex(c["color"])) for c in manifest["classes"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ViewerError(MANIFEST, f"'classes' has no usable id/color list: {exc}") from exc


def default_reuse(release: Path, manifest: dict[str, Any]) -> list[Path]:
    """Viewer folders whose thumbnails a new viewer may reuse: the previous release's (a sibling folder
    named by the manifest's ``previous_release``), when it has one."""
    prev = manifest.get("previous_release")
    return [release.parent / prev / "viewer"] if prev else []


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (one ``stat`` per entry, from the folder listings)."""
    total = 0
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            total += _folder_bytes(Path(entry.path))
        elif entry.is_file():
            total += entry.stat().st_size
    return total


def write_viewer(release: Path, out: Path | None = None, *, reuse: Sequence[Path] | None = None,
                 workers: int = thumbs.WORKERS, thumbs_dir: Path | None = None,
                 manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the viewer of the release folder ``release`` to ``out`` (default ``<release>/viewer``),
    replacing what is there atomically.  Thumbnails are reused from ``out`` and from the viewer folders
    ``reuse`` (default :func:`default_reuse`), the rest made on ``workers`` threads.  ``thumbs_dir``: a folder
    of thumbnails made ahead (:mod:`pipeline.release.staging`), moved into the viewer, not linked; counted as
    reused.  ``manifest``: the release's manifest as the caller parsed it (default: read here).  Returns a summary:
    ``out``, ``index``, ``images``, ``made``, ``reused``, ``decoded_max``, ``bytes``, ``bytes_per_image``,
    ``seconds`` (wall) and ``cpu_seconds`` (this process, all threads)."""
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    release = Path(release)
    manifest = load_manifest(release) if manifest is None else manifest
    out = Path(out) if out is not None else release / "viewer"
    if out.resolve() == release.resolve() or out.resolve() in release.resolve().parents:
        raise ViewerError(str(out), "the viewer folder would replace the release folder; choose another --out")
    folders = [out, *(default_reuse(release, manifest) if reuse is None else reuse)]
    with atomic.atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        made_ahead: list[Path] = []
        if thumbs_dir is not None and thumbs_dir.is_dir():
            try:
                os.replace(thumbs_dir, tmp / "thumbs")
            except OSError:  # another file system: linked or copied like reused thumbnails
                made_ahead = [thumbs_dir]
        counts = thumbs.provide(image_jobs(release, manifest["images"]), tmp / "thumbs", colors=class_colors(manifest),
                                reuse=[Path(f) / "thumbs" for f in folders] + made_ahead, workers=workers)
        for name in ASSETS:
            (tmp / name).write_bytes(_asset(name))
        (tmp / "world.js").write_text(_script("OEM_WORLD", json.loads(_asset("world-110m.json"))), encoding="utf-8")
        (tmp / "data.js").write_text(_script("OEM_VIEWER", viewer_data(release, manifest, out)), encoding="utf-8")
        size = _folder_bytes(tmp)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = len(manifest["images"])
    return {
        "out": out, "index": out / "index.html", "images": n, **counts, "bytes": size,
        "bytes_per_image": size / n if n else float(size), "seconds": time.perf_counter() - t0,
        "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the console: where the viewer is, what it cost."""
    return (f"Viewer: {summary['index']} ({summary['images']} images, {summary['made']} thumbnails made, "
            f"{summary['reused']} reused; {summary['bytes'] / 1024:.0f} KiB, "
            f"{summary['bytes_per_image'] / 1024:.1f} KiB per image; {summary['seconds']:.1f} s, "
            f"{summary['cpu_seconds']:.1f} s CPU)")
