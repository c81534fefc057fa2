"""The one common form in which every source adapter hands a scene to the pipeline.

A :class:`Scene` is a plain, JSON-serialisable record: paths to what was fetched plus the facts the
pipeline needs (georeference when the file has none, licence, region hint).  Adapters produce scenes;
the per-scene Luigi tasks consume them.  Nothing here reads pixels.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: An affine pixel -> CRS transform as rasterio's 6 coefficients (a, b, c, d, e, f).
Affine6 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Georef:
    """A georeference supplied beside an image that carries none (e.g. an xBD PNG).

    ``transform`` is the affine pixel->CRS mapping as rasterio's 6 coefficients (a, b, c, d, e, f).
    ``origin`` says where it came from (e.g. ``"affine fit of 412 xy/lng_lat vertex pairs"``).
    """

    crs: str
    transform: Affine6
    origin: str = ""


#: A label raster's own georeference may differ from its image's by this much (:func:`grid_mismatch`).
LABEL_GEOREF_REL_TOL = 1e-6


def grid_mismatch(transform: Any, width: int, height: int, ref: Any) -> str | None:
    """Why a raster of ``width`` x ``height`` pixels on ``transform`` (an ``affine.Affine``) is not on the image grid
    ``ref``, or None when it is: an identity ``transform`` (no georeference) takes the image's; else the pixel size and
    rotation terms must agree within :data:`LABEL_GEOREF_REL_TOL` relative, and its four corners, mapped into the
    image's pixel space, lie within that share of its size in pixels (at least 1e-3 px) of the image's corners
    (float noise such as 0.29999999999997673 vs 0.3 passes).  The label stage's check of a label against its image
    (:mod:`pipeline.labels.landcover`) and the mosaic's of a chip's label (:mod:`pipeline.sources.mosaic`)."""
    if transform.is_identity:
        return None
    scale = max(abs(ref.a), abs(ref.b), abs(ref.d), abs(ref.e))
    shown = f"label geotransform {tuple(transform)[:6]} differs from the image's {tuple(ref)[:6]}"
    if any(abs(getattr(transform, k) - getattr(ref, k)) > LABEL_GEOREF_REL_TOL * scale for k in "abde"):
        return shown
    inv = ~ref
    tol_px = max(1e-3, LABEL_GEOREF_REL_TOL * max(width, height))
    for c, r in ((0, 0), (width, 0), (0, height), (width, height)):
        ic, ir = inv @ (transform @ (c, r))
        if abs(ic - c) > tol_px or abs(ir - r) > tol_px:
            return f"{shown} (corner ({c}, {r}) off by ({ic - c:.3g}, {ir - r:.3g}) px)"
    return None


@dataclass(frozen=True)
class Scene:
    """One input scene as an adapter yields it.

    Paths are absolute or relative to the working directory.  ``landcover`` is an 8-class index raster
    (ids 0..8) on exactly the image's pixel grid; ``building_mask`` a raster on the image grid whose
    non-zero pixels are buildings; ``footprints`` a vector file of building polygons in
    ``footprints_crs``.  Any of the three may be absent.
    """

    source: str
    scene_id: str
    kind: str
    image: str
    license: str
    attribution: str
    georef: Georef | None = None
    landcover: str | None = None
    building_mask: str | None = None
    footprints: str | None = None
    footprints_crs: str | None = None
    region_hint: str | None = None
    acquired: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique, filesystem-safe key of the scene across sources: ``<source>/<scene_id>``."""
        return f"{self.source}/{self.scene_id}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        data = dict(data)
        if data.get("georef") is not None:
            g = data["georef"]
            data["georef"] = Georef(crs=g["crs"], transform=tuple(g["transform"]), origin=g.get("origin", ""))
        return cls(**data)


def write_catalog(scenes: Iterable[Scene], path: Path) -> None:
    """Write scenes as a JSON list, sorted by scene id (callers handle atomicity)."""
    items = sorted((s.to_dict() for s in scenes), key=lambda d: d["scene_id"])
    Path(path).write_text(json.dumps(items, indent=1, sort_keys=True) + "\n")


def read_catalog(path: Path) -> list[Scene]:
    return [Scene.from_dict(d) for d in json.loads(Path(path).read_text())]
