"""Opening scene rasters for reading, with a supplied georeference or alpha band applied lazily.

A scene needs a CRS and an affine geotransform, either in the image file or in ``scene.georef`` (which
then overrides the file's).  Overrides are applied through a small VRT document that points at the file
band by band, so nothing is loaded: GDAL reads pixels only when they are requested.  Every read in the
pipeline runs under :data:`GDAL_ENV` (a bounded block cache), so memory does not grow with the scene.

**Antimeridian.**  A raster in a geographic CRS whose extent reaches past ±180° (e.g. 179.997°..180.003°)
is presented in an equidistant cylindrical CRS centred on the scene (``+proj=eqc +lon_0=<centre>`` on the
raster's own datum, :func:`antimeridian_georef`): x and y are the raster's longitude and latitude times
``a·π/180``, so the affine stays exact, and the discontinuity of longitudes moves to the far side of the
globe.  Without it GDAL's warper maps the part of a tile on the other side of ±180° outside the source
(it came out as nodata and the tile was dropped).  :func:`native_crs` still reports the file's CRS.
"""
from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import EquidistantCylindricalConversion
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from pipeline.errors import SceneRejected
from pipeline.scene import Georef, Scene
from pipeline.sources.localfs import raster_driver

#: GDAL settings used for every read in the pipeline: a bounded block cache, two threads, no ``.aux.xml``
#: side-cars (a source could put a CRS or a georeference there, bypassing what the pipeline checks).  The cache
#: holds the source blocks shared by neighbouring tiles; 64 MB fills up already on modest scenes, so the
#: peak RSS of tiling does not depend on the scene size (a larger cache only saves re-decoding the few
#: blocks shared by two rows of tiles: a few % of the CPU time, measured with bench/run).
GDAL_ENV: dict[str, Any] = {"GDAL_CACHEMAX": 64 * 1024 * 1024, "GDAL_NUM_THREADS": "2", "GDAL_PAM_ENABLED": "NO"}

GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
    "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64",
}
_COLORINTERP_NAMES = {
    ColorInterp.gray: "Gray", ColorInterp.red: "Red", ColorInterp.green: "Green",
    ColorInterp.blue: "Blue", ColorInterp.alpha: "Alpha", ColorInterp.palette: "Palette",
}



def _vrt_wrapper_xml(path: str, src: rasterio.io.DatasetReader, crs: CRS | None,
                     transform: Sequence[float] | None, bands: Sequence[int] | None = None,
                     alpha_band: int | None = None, keep_nodata: bool = True) -> str:
    """A small VRT document that points at ``path`` band by band, adding a georeference / alpha.

    Nothing is read: GDAL opens the source lazily when pixels of the VRT are requested.  ``transform``
    is rasterio's (a, b, c, d, e, f); the VRT stores GDAL's (c, a, b, f, d, e).
    """
    bands = list(bands) if bands is not None else list(range(1, src.count + 1))
    parts = [f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">']
    if crs is not None:
        parts.append(f"<SRS>{escape(crs.to_wkt())}</SRS>")
    if transform is not None:
        a, b, c, d, e, f = (float(v) for v in transform[:6])
        parts.append("<GeoTransform>" + ", ".join(repr(v) for v in (c, a, b, f, d, e)) + "</GeoTransform>")
    for out_idx, bidx in enumerate(bands, start=1):
        dtype = GDAL_TYPES.get(src.dtypes[bidx - 1])
        if dtype is None:
            raise ValueError(f"unsupported data type {src.dtypes[bidx - 1]}")
        ci = ColorInterp.alpha if alpha_band == bidx else src.colorinterp[bidx - 1]
        parts.append(f'<VRTRasterBand dataType="{dtype}" band="{out_idx}">')
        if ci in _COLORINTERP_NAMES:
            parts.append(f"<ColorInterp>{_COLORINTERP_NAMES[ci]}</ColorInterp>")
        nodata = src.nodatavals[bidx - 1]
        if nodata is not None and keep_nodata:
            parts.append(f"<NoDataValue>{nodata!r}</NoDataValue>")
        parts.append(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(Path(path).resolve()))}'
            f"</SourceFilename><SourceBand>{bidx}</SourceBand></SimpleSource></VRTRasterBand>"
        )
    parts.append("</VRTDataset>")
    return "".join(parts)


#: ``warnings.catch_warnings`` swaps the process-wide filter list; the tiling opens datasets from several
#: threads, so the swaps are serialised (else one thread's exit could restore another's filters).
_WARNINGS_LOCK = threading.Lock()


def _open_raw(path: str, error: type = SceneRejected) -> rasterio.io.DatasetReader:
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path, driver=_driver(path, error))
    except (RasterioError, OSError) as exc:
        raise error(path, f"cannot read: {exc}") from exc


def _driver(path: str, error: type) -> str:
    """The GDAL driver for a raster a source supplies: GeoTIFF, PNG or JPEG by its first bytes, nothing else (a
    "tif" holding VRT or WMS XML would read other files or URLs: see :mod:`pipeline.sources.localfs`)."""
    if not Path(path).exists():
        raise error(path, "cannot read: file does not exist")
    driver = raster_driver(path)
    if driver is None:
        raise error(path, "cannot read: not a GeoTIFF, PNG or JPEG file")
    return driver


def antimeridian_georef(crs: CRS | None, transform: Sequence[float] | Affine, width: int, height: int
                        ) -> Georef | None:
    """The equidistant cylindrical georeference of a geographic raster whose extent crosses ±180° (module
    doc), or ``None`` when it does not cross (or is not geographic in degrees, or spans the globe)."""
    if crs is None or not crs.is_geographic:
        return None
    t = transform if isinstance(transform, Affine) else Affine(*tuple(transform)[:6])
    if t.is_identity:
        return None
    xs = [t.c, t.c + t.a * width, t.c + t.b * height, t.c + t.a * width + t.b * height]
    if (min(xs) >= -180.0 and max(xs) <= 180.0) or max(xs) - min(xs) >= 360.0:
        return None
    geo = ProjCRS.from_wkt(crs.to_wkt())
    unit = geo.axis_info[0].unit_name if geo.axis_info else "degree"
    if "degree" not in unit:
        return None
    lon0 = round(((sum(xs) / 4 + 180.0) % 360.0) - 180.0, 3)
    eqc = ProjectedCRS(EquidistantCylindricalConversion(longitude_natural_origin=lon0), geodetic_crs=geo,
                       name=f"Equidistant cylindrical, lon_0={lon0:g} (antimeridian)")
    if geo.ellipsoid is None:
        return None
    k = geo.ellipsoid.semi_major_metre * math.pi / 180.0
    x0 = (((t.c - lon0) + 180.0) % 360.0 - 180.0) * k
    return Georef(crs=eqc.to_wkt(), transform=(t.a * k, t.b * k, x0, t.d * k, t.e * k, t.f * k),
                  origin=f"antimeridian: eqc lon_0={lon0:g}")


def _effective_georef(src: rasterio.io.DatasetReader, georef: Georef | None) -> Georef | None:
    """``georef`` (or the file's own), replaced by :func:`antimeridian_georef` when that applies."""
    crs = CRS.from_user_input(georef.crs) if georef is not None else src.crs
    transform = tuple(georef.transform) if georef is not None else tuple(src.transform)[:6]
    wrapped = antimeridian_georef(crs, transform, src.width, src.height)
    return wrapped if wrapped is not None else georef


def native_crs(scene: Scene) -> CRS | None:
    """The CRS of ``scene`` as given (``scene.georef``'s, else the file's), before any antimeridian override."""
    if scene.georef is not None:
        return CRS.from_user_input(scene.georef.crs)
    src = _open_raw(scene.image)
    try:
        default = scene_default_crs(scene)
        return src.crs if src.crs is not None or not default or src.transform.is_identity \
            else CRS.from_user_input(default)
    finally:
        src.close()


def _scene_alpha_override(scene: Scene) -> int | None:
    value = (scene.extra or {}).get("alpha_band")
    return int(value) if value is not None else None


@contextlib.contextmanager
def open_raster(path: str, *, georef: Georef | None = None, alpha_band: int | None = None,
                bands: Sequence[int] | None = None, keep_nodata: bool = True,
                error: type = SceneRejected, default_crs: str | None = None) -> Iterator[rasterio.io.DatasetReader]:
    """Open ``path`` for reading, applying ``georef`` / an alpha band override when given (``default_crs``: the
    CRS of a file that has a geotransform but no CRS, with that geotransform, when no ``georef`` is given).

    ``bands`` restricts the bands exposed; ``keep_nodata=False`` drops the file's nodata value (used
    for label rasters, where 0 is a class to vote with, not a hole).
    When any override is given the file is wrapped in a small VRT document (no pixels are read), so
    the dataset yielded has the georeference of ``georef`` and band ``alpha_band`` marked as alpha.
    An unreadable file raises ``error(path, "cannot read: ...")``.  A geographic raster crossing ±180° is
    presented in the antimeridian CRS (module doc).
    """
    src = _open_raw(path, error)
    try:
        if georef is None and default_crs and src.crs is None and not src.transform.is_identity:
            georef = Georef(crs=default_crs, transform=tuple(src.transform)[:6], origin="options.crs")
        georef = _effective_georef(src, georef)
        if georef is None and alpha_band is None and bands is None and keep_nodata:
            yield src
            return
        crs = CRS.from_user_input(georef.crs) if georef is not None else src.crs
        transform = tuple(georef.transform) if georef is not None else (
            tuple(src.transform)[:6] if not src.transform.is_identity else None)
        try:
            xml = _vrt_wrapper_xml(path, src, crs, transform, bands=bands, alpha_band=alpha_band,
                                   keep_nodata=keep_nodata)
            vrt = rasterio.open(xml)
        except (RasterioError, ValueError) as exc:
            raise error(path, f"cannot read: {exc}") from exc
        with vrt:
            yield vrt
    finally:
        src.close()


@contextlib.contextmanager
def open_scene(scene: Scene) -> Iterator[rasterio.io.DatasetReader]:
    """Yield a rasterio dataset for ``scene.image`` with ``scene.georef`` applied when set.

    The georeference (and an alpha override from ``scene.extra["alpha_band"]``) is applied through a
    small VRT document pointing at the file, so nothing is loaded.  A mosaic of chips
    (``scene.extra["mosaic"]``, :mod:`pipeline.sources.mosaic`) is a VRT document of its chips, each checked to
    be a GeoTIFF first.  An unreadable file raises ``SceneRejected(<file>, "cannot read: ...")``.
    """
    mosaic = (scene.extra or {}).get("mosaic")
    if mosaic:
        for chip in mosaic["chips"]:
            _driver(chip["image"], SceneRejected)
        try:
            # one thread: GDAL's VRT reading threads are made once per process, and a forked child (every
            # contained read, pipeline.forked) would wait for ever on the pool of a parent that read a mosaic
            vrt = rasterio.open(_mosaic_xml(mosaic), NUM_THREADS="1")
        except (RasterioError, ValueError, KeyError) as exc:
            raise SceneRejected(scene.image, f"cannot read the mosaic of {len(mosaic['chips'])} chips: {exc}") from exc
        with vrt:
            yield vrt
        return
    with open_raster(scene.image, georef=scene.georef, alpha_band=_scene_alpha_override(scene),
                     default_crs=scene_default_crs(scene)) as ds:
        yield ds


def mosaic_label_xml(mosaic: dict[str, Any], bands: Sequence[int]) -> str:
    """A VRT document of a mosaic's land-cover rasters (each chip's ``landcover``, :mod:`pipeline.sources.mosaic`) at
    the chips' offsets on the mosaic's grid, bands ``bands`` of them; no nodata and no mask: pixels no chip's label
    covers are 0 (unlabelled).  Later chips are drawn over earlier ones, as in the image's mosaic."""
    dtype = GDAL_TYPES[mosaic["label"]["dtype"]]
    parts = [_mosaic_header(mosaic)]
    for i, band in enumerate(bands, start=1):
        parts.append(f'<VRTRasterBand dataType="{dtype}" band="{i}">' + _mosaic_sources(mosaic, str(band), "landcover")
                     + "</VRTRasterBand>")
    return "".join(parts) + "</VRTDataset>"


def _mosaic_header(mosaic: dict[str, Any]) -> str:
    a, b, c, d, e, f = (float(v) for v in mosaic["transform"])
    return (f'<VRTDataset rasterXSize="{int(mosaic["width"])}" rasterYSize="{int(mosaic["height"])}">'
            f"<SRS>{escape(mosaic['crs'])}</SRS>"
            "<GeoTransform>" + ", ".join(repr(v) for v in (c, a, b, f, d, e)) + "</GeoTransform>")


def _mosaic_sources(mosaic: dict[str, Any], band: str, layer: str = "image") -> str:
    return "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(Path(ch[layer]).resolve()))}'
        f'</SourceFilename><SourceBand>{band}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{int(ch["width"])}" ySize="{int(ch["height"])}"/>'
        f'<DstRect xOff="{int(ch["x"])}" yOff="{int(ch["y"])}" xSize="{int(ch["width"])}" '
        f'ySize="{int(ch["height"])}"/></SimpleSource>' for ch in mosaic["chips"])


def _mosaic_xml(mosaic: dict[str, Any]) -> str:
    """A VRT document of a mosaic's chips: every band from each chip at its offset, and a mask from the chips'
    masks, so that pixels no chip covers are nodata.  Later chips are drawn over earlier ones."""
    dtype = GDAL_TYPES[mosaic["dtype"]]
    parts = [_mosaic_header(mosaic)]
    for i, name in enumerate(mosaic["colorinterp"], start=1):
        parts.append(f'<VRTRasterBand dataType="{dtype}" band="{i}">')
        ci = ColorInterp[name] if name in ColorInterp.__members__ else None
        if ci in _COLORINTERP_NAMES:
            parts.append(f"<ColorInterp>{_COLORINTERP_NAMES[ci]}</ColorInterp>")
        if mosaic.get("nodata") is not None:
            parts.append(f"<NoDataValue>{float(mosaic['nodata'])!r}</NoDataValue>")
        parts.append(_mosaic_sources(mosaic, str(i)) + "</VRTRasterBand>")
    parts.append('<MaskBand><VRTRasterBand dataType="Byte">' + _mosaic_sources(mosaic, "mask,1")
                 + "</VRTRasterBand></MaskBand>")
    parts.append("</VRTDataset>")
    return "".join(parts)


def scene_default_crs(scene: Scene) -> str | None:
    """The CRS of the scene's image when the file carries none but has a geotransform (a TIFF or JPEG with a world
    file and no ``.prj``): its source's ``options.crs`` (``scene.extra["crs"]``), else None."""
    value = (scene.extra or {}).get("crs")
    return str(value) if value else None


