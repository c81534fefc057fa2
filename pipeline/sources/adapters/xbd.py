"""xBD (xView2) adapter: pre-disaster PNG images + label JSONs, georeferenced from side information.

Layout (the challenge archives extract to ``train/``, ``test/``, ``hold/``, ``tier3/``)::

    <root>/<split>/images/<disaster>_<8 digits>_pre_disaster.png   (.tif accepted too)
    <root>/<split>/labels/<same stem>.json
    <root>/<split>/landcover/<same stem>.png|.tif                  (our 8-class labels, optional)
    <root>/xview_geotransforms.json                                (optional)

``split`` is ``options.split`` (default ``train``); when ``<root>/<split>/images`` is missing but
``<root>/images`` exists, ``root`` itself is taken as the split folder.  Only **pre-disaster** images are
used (OpenEarthMap takes the building class from the pre-disaster polygons); post-disaster files are
ignored.  When an image exists both as .png and .tif, the .png is used.

Georeference policy (xBD PNGs carry none; ``Scene.georef`` maps pixel *corner* coordinates (col, row)
to the CRS with rasterio's affine coefficients (a, b, c, d, e, f)):

1. ``xview_geotransforms.json`` (``options.geotransforms``, a path absolute or relative to ``root``;
   default ``<root>/xview_geotransforms.json``) when it has an entry for the image file name:
   ``{"<png name>": [[c, a, b, f, d, e], "<WKT projection>"]}`` — GDAL order, reordered here; the WKT
   gives the CRS (EPSG:4326 when empty).
2. Else a least-squares affine fit of every ``features.xy`` vertex (pixel column/row, taken as
   continuous corner-based coordinates, as the xView2 baseline rasterises them) to the matching
   ``features.lng_lat`` vertex (features paired by ``properties.uid``, rings paired vertex by vertex,
   closing vertices counted once), CRS ``EPSG:4326``.  It needs >= 3 non-collinear points and an RMS
   residual of at most :attr:`XbdAdapter.max_fit_rms_m` metres (measured in the local UTM zone).
3. Neither -> ``SceneRejected(image, "xBD image has no buildings to fit a georeference and no
   xview_geotransforms.json entry")``.

A ``.tif`` image that already carries a CRS and transform keeps its own georeference (``georef=None``).

Scene facts: ``footprints`` = the label JSON (``footprints_crs`` EPSG:4326,
``extra["footprints_format"] = "xbd-json"``); ``acquired`` = date of ``metadata.capture_date``;
``extra``: ``disaster``, ``split``, ``gsd_metadata`` (``metadata.gsd`` as published: it is the
multispectral GSD, several times the pan-sharpened pixel size), ``gsd_fit`` / ``fit_rms_m`` /
``fit_pairs`` when a fit was computed, ``gsd_georef`` (metres per pixel of the georef used).
``region_hint``: ``options.regions[disaster]`` when given, else :func:`disaster_region`.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from pipeline.errors import PipelineInputError, SceneRejected
from pipeline.scene import Affine6, Georef, Scene
from pipeline.sources.adapters.base import Adapter, sibling_raster
from pipeline.sources.config import SourceConfig
from pipeline.sources.footprints import XBD_JSON, check_crs_text, crs_string, read_xbd_label, xbd_polygons
from pipeline.sources.localfs import raster_driver

#: Words naming the disaster type in xBD disaster names (dropped to get the place).
DISASTER_WORDS: frozenset[str] = frozenset(
    {
        "tsunami", "wildfire", "bushfire", "fire", "fires", "tornado", "earthquake", "volcano", "eruption",
        "flooding", "flood", "floods", "hurricane", "typhoon", "cyclone", "storm", "landslide", "monsoon",
    }
)


def disaster_region(disaster: str) -> str:
    """Place name of an xBD disaster: drop the disaster-type words, join the rest with ``_``.

    ``santa-rosa-wildfire`` -> ``santa_rosa``, ``palu-tsunami`` -> ``palu``, ``hurricane-michael`` ->
    ``michael``, ``lower-puna-volcano`` -> ``lower_puna``.  A name made only of type words is kept whole.
    """
    tokens = [t for t in re.split(r"[-_\s]+", disaster.lower()) if t]
    place = [t for t in tokens if t not in DISASTER_WORDS]
    return "_".join(place or tokens)


def _rings(geom: BaseGeometry) -> list[np.ndarray]:
    """Vertex arrays of every ring of a (Multi)Polygon, closing vertex removed."""
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom] if isinstance(geom, Polygon) else []
    out = []
    for p in polys:
        for ring in [p.exterior, *p.interiors]:
            xy = np.asarray(ring.coords, dtype=float)[:, :2]
            if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
                xy = xy[:-1]
            out.append(xy)
    return out


def vertex_pairs(data: dict[str, Any], path: str | Path = "") -> tuple[np.ndarray, np.ndarray]:
    """Matched (pixel, lon/lat) vertices of an xBD label: two ``(n, 2)`` arrays.

    Features are paired by ``properties.uid``; a feature whose xy and lng_lat geometries do not have the
    same rings with the same vertex counts is skipped.
    """
    xy = dict(xbd_polygons(data, "xy", path))
    ll = dict(xbd_polygons(data, "lng_lat", path))
    px: list[np.ndarray] = []
    geo: list[np.ndarray] = []
    for uid in sorted(set(xy) & set(ll)):
        rp, rg = _rings(xy[uid]), _rings(ll[uid])
        if len(rp) != len(rg) or any(len(a) != len(b) for a, b in zip(rp, rg)):
            continue
        px.extend(rp)
        geo.extend(rg)
    if not px:
        return np.empty((0, 2)), np.empty((0, 2))
    return np.concatenate(px), np.concatenate(geo)


def _utm_transformer(lon: float, lat: float) -> Transformer:
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


def affine_gsd(transform: tuple[float, ...], col: float, row: float, crs: str = "EPSG:4326") -> float:
    """Ground size in metres of one pixel at (col, row): mean length of the column and row steps,
    measured in the local UTM zone (or directly when ``crs`` is projected in metres)."""
    a, b, c, d, e, f = transform
    pts = np.array([[col, row], [col + 1, row], [col, row + 1]], dtype=float)
    x = a * pts[:, 0] + b * pts[:, 1] + c
    y = d * pts[:, 0] + e * pts[:, 1] + f
    cr = CRS.from_user_input(crs)
    in_metres = cr.is_projected and all(ax.unit_name in ("metre", "meter") for ax in cr.axis_info)
    if not in_metres:
        if not cr.equals(CRS.from_epsg(4326), ignore_axis_order=True):
            x, y = Transformer.from_crs(cr, "EPSG:4326", always_xy=True).transform(x, y)
        x, y = _utm_transformer(float(x[0]), float(y[0])).transform(x, y)
    x, y = np.asarray(x), np.asarray(y)
    return float((np.hypot(x[1] - x[0], y[1] - y[0]) + np.hypot(x[2] - x[0], y[2] - y[0])) / 2.0)


def fit_affine(px: np.ndarray, lonlat: np.ndarray, file: str | Path = "") -> tuple[Affine6, float]:
    """Least-squares affine (a, b, c, d, e, f) with lon = a*col + b*row + c, lat = d*col + e*row + f.

    Returns the coefficients and the RMS residual in metres (local UTM).  Raises SceneRejected naming
    ``file`` when there are fewer than 3 distinct points or they are collinear.
    """
    px = np.asarray(px, dtype=float)
    lonlat = np.asarray(lonlat, dtype=float)
    if len(px) < 3 or len(np.unique(px, axis=0)) < 3:
        raise SceneRejected(str(file), f"xBD affine fit needs >= 3 distinct vertices, got {len(px)}")
    mp, mg = px.mean(axis=0), lonlat.mean(axis=0)
    cp = px - mp
    s = np.linalg.svd(cp, compute_uv=False)
    if s[0] == 0 or s[-1] / s[0] < 1e-6:
        raise SceneRejected(str(file), "xBD affine fit: the building vertices are collinear")
    design = np.column_stack([cp, np.ones(len(cp))])
    coef, *_ = np.linalg.lstsq(design, lonlat - mg, rcond=None)
    a, d = coef[0]
    b, e = coef[1]
    c = mg[0] + coef[2, 0] - a * mp[0] - b * mp[1]
    f = mg[1] + coef[2, 1] - d * mp[0] - e * mp[1]
    pred_lon = a * px[:, 0] + b * px[:, 1] + c
    pred_lat = d * px[:, 0] + e * px[:, 1] + f
    tr = _utm_transformer(float(mg[0]), float(mg[1]))
    ox, oy = tr.transform(lonlat[:, 0], lonlat[:, 1])
    qx, qy = tr.transform(pred_lon, pred_lat)
    rms = float(np.sqrt(np.mean((np.asarray(ox) - qx) ** 2 + (np.asarray(oy) - qy) ** 2)))
    return (float(a), float(b), float(c), float(d), float(e), float(f)), rms


def gdal_to_affine(gt: Iterable[float]) -> Affine6:
    """GDAL geotransform (c, a, b, f, d, e) -> rasterio affine coefficients (a, b, c, d, e, f)."""
    g = [float(v) for v in gt]
    if len(g) != 6:
        raise ValueError(f"a GDAL geotransform has 6 numbers, got {len(g)}")
    return (g[1], g[2], g[0], g[4], g[5], g[3])


class XbdAdapter(Adapter):
    """xBD / xView2 challenge layout (see module docstring for the georeference policy)."""

    kind: ClassVar[str] = "xbd"
    title: ClassVar[str] = "xBD"
    #: xBD's 19 disasters happened between 2011 and 2019 (Gupta et al. 2019), its pre-disaster images too.
    acquired_range: ClassVar[tuple[str, str] | None] = ("2011-01-01", "2019-12-31")
    default_license: ClassVar[str] = "CC BY-NC-SA 4.0"
    citation: ClassVar[str] = (
        "Gupta et al., xBD: A Dataset for Assessing Building Damage from Satellite Imagery, arXiv:1911.09296"
    )
    label_encoding: ClassVar[str] = (
        "label JSON: features.xy (pixel WKT) and features.lng_lat (EPSG:4326 WKT) building polygons, paired by uid"
    )
    images_dir: ClassVar[str] = "images"
    labels_dir: ClassVar[str] = "labels"
    landcover_dir: ClassVar[str] = "landcover"
    geotransforms_name: ClassVar[str] = "xview_geotransforms.json"
    image_re: ClassVar[re.Pattern[str]] = re.compile(
        r"^(?P<disaster>[a-z0-9]+(?:-[a-z0-9]+)*)_(?P<num>\d{8})_pre_disaster\.(?P<ext>png|tif)$"
    )
    image_suffix_preference: ClassVar[tuple[str, ...]] = ("png", "tif")
    #: Default image side in pixels, used when the label metadata gives no width/height.
    image_size: ClassVar[int] = 1024
    #: A fit whose RMS residual exceeds this (metres) is rejected as inconsistent labels.
    max_fit_rms_m: ClassVar[float] = 2.0

    # -- layout -------------------------------------------------------------------------------
    def split_dir(self, root: Path, source: SourceConfig) -> Path:
        split = (source.options or {}).get("split") or "train"
        cand = root / split
        if not (cand / self.images_dir).is_dir() and (root / self.images_dir).is_dir():
            return root
        return cand

    def geotransforms_path(self, root: Path, source: SourceConfig) -> Path:
        opt = (source.options or {}).get("geotransforms")
        if opt:
            p = Path(opt)
            return p if p.is_absolute() else root / p
        return root / self.geotransforms_name

    def load_geotransforms(self, path: Path) -> dict[str, Any]:
        """The geotransforms file as a dict (empty when absent); SceneRejected when unreadable."""
        if not path.is_file():
            return {}
        try:
            data = self.read_json(path)
        except SceneRejected as exc:
            raise SceneRejected(str(path), f"unreadable {self.geotransforms_name}: {exc.reason}") from exc
        if not isinstance(data, dict):
            raise SceneRejected(str(path), f"{self.geotransforms_name} must be a JSON object keyed by image name")
        return data

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        d = self.split_dir(root, source)
        return (f"no xBD pre-disaster images matching <disaster>_<8 digits>_pre_disaster.png|.tif in "
                f"{d / self.images_dir}")

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        split_dir = self.split_dir(root, source)
        gt_path = self.geotransforms_path(root, source)
        gts = self.load_geotransforms(gt_path)
        chosen: dict[str, tuple[Path, re.Match[str]]] = {}
        images = split_dir / self.images_dir
        for p in sorted(images.iterdir()) if images.is_dir() else []:
            m = self.image_re.match(p.name)
            if not m or not p.is_file():
                continue
            stem = p.name[: -len(m["ext"]) - 1]
            prev = chosen.get(stem)
            if prev is None or self.image_suffix_preference.index(m["ext"]) < self.image_suffix_preference.index(
                prev[1]["ext"]
            ):
                chosen[stem] = (p, m)
        for stem in sorted(chosen):
            image, m = chosen[stem]
            yield functools.partial(self.scene_for, image, m, stem, split_dir, gts, gt_path, source)

    # -- one scene ----------------------------------------------------------------------------
    @staticmethod
    def _label_json(label: Path) -> dict[str, Any] | None:
        """The parsed label JSON beside the image, None when there is none; unreadable -> SceneRejected."""
        if not label.is_file():
            return None
        try:
            return read_xbd_label(label)
        except PipelineInputError as exc:
            raise SceneRejected(exc.file, exc.reason) from exc

    @staticmethod
    def _fit(data: dict[str, Any] | None, label: Path, image: Path
             ) -> tuple[tuple[Affine6, float, int] | None, SceneRejected | None]:
        """``((coefficients, RMS in metres, vertex pairs) or None, why the fit failed or None)``: the affine fit
        of the label's pixel (``xy``) to ``lng_lat`` vertices."""
        if data is None:
            return None, None
        try:
            px, ll = vertex_pairs(data, label)
        except PipelineInputError as exc:
            raise SceneRejected(exc.file, exc.reason) from exc
        if not len(px):
            return None, None
        try:
            coeffs, rms = fit_affine(px, ll, image)
        except SceneRejected as exc:
            return None, exc
        return (coeffs, rms, len(px)), None

    def _georef(self, image: Path, stem: str, fit: tuple[Affine6, float, int] | None,
                fit_error: SceneRejected | None, geotransforms: dict[str, Any], geotransforms_path: Path
                ) -> Georef | None:
        """The scene's georeference: its ``xview_geotransforms.json`` entry, else the affine fit (when its RMS
        is small enough), else SceneRejected; None for a GeoTIFF that has its own."""
        georef: Georef | None = None
        entry = geotransforms.get(image.name) or geotransforms.get(f"{stem}.png")
        if entry is not None:
            georef = self._georef_from_entry(entry, geotransforms_path, image.name)
        elif fit is not None:
            coeffs, rms, n = fit
            if rms > self.max_fit_rms_m:
                raise SceneRejected(
                    str(image), f"xBD affine fit of {n} xy/lng_lat vertex pairs has RMS {rms:.2f} m "
                    f"(> {self.max_fit_rms_m} m): labels inconsistent"
                )
            georef = Georef("EPSG:4326", coeffs, f"affine fit of {n} xy/lng_lat vertex pairs, RMS {rms:.2f} m")
        elif fit_error is not None:
            raise SceneRejected(str(image), f"{fit_error.reason} and no {self.geotransforms_name} entry")
        else:
            raise SceneRejected(
                str(image), "xBD image has no buildings to fit a georeference and no xview_geotransforms.json entry"
            )
        if image.suffix.lower() == ".tif" and self._has_own_georef(image):
            georef = None
        return georef

    def scene_for(
        self,
        image: Path,
        match: re.Match[str],
        stem: str,
        split_dir: Path,
        geotransforms: dict[str, Any],
        geotransforms_path: Path,
        source: SourceConfig,
    ) -> Scene:
        disaster = match["disaster"]
        label = split_dir / self.labels_dir / f"{stem}.json"
        data = self._label_json(label)
        meta = (data or {}).get("metadata") or {}
        extra: dict[str, Any] = {"disaster": meta.get("disaster") or disaster, "split": split_dir.name}
        if meta.get("gsd") is not None:
            extra["gsd_metadata"] = float(meta["gsd"])
        width = int(meta.get("width") or self.image_size)
        height = int(meta.get("height") or self.image_size)
        fit, fit_error = self._fit(data, label, image)
        georef = self._georef(image, stem, fit, fit_error, geotransforms, geotransforms_path)
        if fit is not None:
            extra["gsd_fit"] = affine_gsd(fit[0], width / 2.0, height / 2.0)
            extra["fit_rms_m"] = fit[1]
            extra["fit_pairs"] = fit[2]
        if georef is not None:
            extra["gsd_georef"] = affine_gsd(georef.transform, width / 2.0, height / 2.0, georef.crs)
        if data is not None:
            extra["footprints_format"] = XBD_JSON
        regions = (source.options or {}).get("regions") or {}
        acquired = str(meta["capture_date"])[:10] if meta.get("capture_date") else None
        return self.make_scene(
            source,
            stem,
            image,
            georef=georef,
            landcover=sibling_raster(split_dir / self.landcover_dir, stem, (".png", ".tif", ".tiff")),
            footprints=label if data is not None else None,
            footprints_crs="EPSG:4326" if data is not None else None,
            region_hint=regions.get(disaster) or disaster_region(disaster),
            acquired=acquired,
            extra=extra,
        )

    def _georef_from_entry(self, entry: Any, path: Path, name: str) -> Georef:
        try:
            gt, wkt = entry[0], (entry[1] if len(entry) > 1 else "")
            coeffs = gdal_to_affine(gt)
            if wkt:
                check_crs_text(str(wkt))
            crs = crs_string(wkt) if wkt else "EPSG:4326"
        except Exception as exc:  # noqa: BLE001 - any malformed entry is the same problem
            raise SceneRejected(str(path), f"bad entry for {name}: {exc}") from exc
        return Georef(crs, coeffs, f"{self.geotransforms_name} entry for {name}")

    @staticmethod
    def _has_own_georef(image: Path) -> bool:
        try:
            with rasterio.open(image, driver=raster_driver(image) or "PNG") as ds:
                return ds.crs is not None and not ds.transform.is_identity
        except rasterio.errors.RasterioIOError as exc:
            raise SceneRejected(str(image), f"unreadable image: {exc}") from exc
