"""Generating the demo source: every scene file of the demo table, deterministically from ``(seed, size)``
(policies: the package docstring)."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from oem_demo.geodesy import file_centres, geotransform, scene_dims
from oem_demo.render import render
from oem_demo.scenes import DEMO_SCENES, LAYOUTS, SIZES, DemoScene
from oem_demo.world import make_world
from oem_demo.writers import inria, local, spacenet, xbd
from oem_demo.writers.common import SceneFile, json_text
from pipeline.atomic import write_text

#: The writer of each layout: ``write(scene_file) -> image path relative to the demo root``.
WRITERS: dict[str, Callable[[SceneFile], str]] = {
    "xbd": xbd.write, "inria": inria.write, "spacenet": spacenet.write, "local": local.write,
}
#: ``generator`` recorded in ``demo.json``.  It names the generator's output format, not its module: it is
#: part of every demo release (the fetch record lists ``demo.json`` with its sha256), so it stays fixed.
GENERATOR_ID = "pipeline.demo"


def scene_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one scene file: ``SeedSequence([seed mod 2**32, crc32(key)])``.

    Not :mod:`pipeline.rng` (SHA-256): this derivation defines the demo data itself, and every file of every
    demo release (and its checksum in the manifest) follows from it, so it is kept as it was."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode())]))


def generate_file(root: Path, sc: DemoScene, size: str, seed: int, index: int, lon: float, lat: float,
                  w: int, h: int, written: list[Path]) -> dict:
    """Render and write file ``index`` of the table row ``sc`` centred on (lon, lat); returns its scene record."""
    rng = scene_rng(seed, f"{sc.layout}/{sc.region}/{index}")
    tf = geotransform(sc.crs, lon, lat, sc.gsd, w, h)
    world = None
    for _ in range(20):  # xBD needs >= 5 buildings for its affine fit; other layouts want some too
        world = make_world(rng, sc, w, h, sc.gsd, lat)
        if len(world.buildings) >= 5:
            break
    assert world is not None
    satellite = sc.layout in ("xbd", "spacenet")
    label, img, valid = render(rng, world, sc, w, h, sc.gsd, satellite)
    rects_px = [r / sc.gsd for r in world.buildings]  # continuous pixel coordinates (col, row)
    rel = WRITERS[sc.layout](SceneFile(root=root, sc=sc, index=index, tf=tf, img=img, label=label, valid=valid,
                                       rects_px=rects_px, rng=rng, written=written))
    return {"layout": sc.layout, "region": sc.region, "continent": sc.continent, "country": sc.country,
            "crs": sc.crs, "gsd": sc.gsd, "path": rel, "width": w, "height": h,
            "center_lonlat": [round(lon, 6), round(lat, 6)], "buildings": int(len(world.buildings)),
            "nodata": sc.nodata, "target_gsd": sc.target_gsd,
            "expected_tiles": 0 if sc.target_gsd is None else sc.spec(size)[1] * sc.spec(size)[2]}


def generate_demo(root: Path, seed: int = 0, size: str = "full") -> dict:
    """Write every scene of :data:`DEMO_SCENES` under ``root`` and return ``{"scenes": [...]}``.

    ``size`` is ``"full"`` (about 110 pipeline tiles, >= 7 for most regions) or ``"small"`` (one tile's worth per
    region, for tests).  Each scene record has ``layout, region, continent, country, crs, gsd, path`` (the image,
    relative to ``root``, POSIX separators), ``width, height, center_lonlat, buildings, nodata, target_gsd,
    expected_tiles``; records are sorted by ``(layout, region, path)``.  ``root`` is created if missing; files of a
    previous demo run under ``root`` that this run does not write again are removed, so ``root`` always holds
    exactly one demo (a ``demo.json`` marker records seed and size).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(repr(s) for s in SIZES)}, got {size!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "demo.json"
    had_marker = marker.is_file()
    written: list[Path] = []
    scenes = []
    for sc in DEMO_SCENES:
        w, h = scene_dims(sc, size)
        for i, (lon, lat) in enumerate(file_centres(sc, size, w, h)):
            scenes.append(generate_file(root, sc, size, seed, i, lon, lat, w, h, written))
    scenes.sort(key=lambda s: (s["layout"], s["region"], s["path"]))
    if had_marker:  # root holds an earlier demo: drop its files that this run did not write again
        keep = {p.resolve() for p in written}
        for lay in LAYOUTS:
            for p in sorted((root / lay).rglob("*")):
                if p.is_file() and p.resolve() not in keep:
                    p.unlink()
    write_text(marker, json_text({"generator": GENERATOR_ID, "seed": int(seed), "size": size,
                              "scenes": len(scenes)}))
    return {"scenes": scenes}
