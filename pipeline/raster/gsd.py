"""Geodesy of a scene: its local UTM zone, its native ground sample distance and the GSD rule.

* **UTM zone** (:func:`utm_zone_for`): the WGS 84 UTM zone of the scene centre, Norway and Svalbard
  exceptions included; north of the equator (lat >= 0) ``EPSG:326zz``, else ``EPSG:327zz``.  UTM is not
  defined beyond 84°N and 80°S: a scene centred there is put in the Universal Polar Stereographic grid
  (``EPSG:32661`` UPS North, ``EPSG:32761`` UPS South, metres, easting/northing), where the GSD rule and
  the snapping work unchanged (:func:`utm_crs_for` returns the output CRS either way).
* **Native GSD** (:func:`native_gsd_m`) is measured in metres in that zone, as the mean of the ground
  length of one pixel step along columns and along rows at the centre pixel (so EPSG:3857 pixels shrink
  by cos(lat) and EPSG:4326 degrees are converted properly).
* **GSD rule** (:func:`choose_target_gsd`): coarser than 0.5 m (+2 % tolerance) -> rejected; 0.25-0.5 m
  -> kept at the native GSD rounded to 1 cm; finer -> 0.3 m or 0.5 m, whichever makes the downsampling
  factor closest to an integer (ties to the finer).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from pipeline.errors import SceneRejected


def utm_zone_for(lon: float, lat: float) -> int:
    """Standard UTM zone number (1..60) of a WGS 84 position, with the Norway and Svalbard exceptions."""
    lon = ((float(lon) + 180.0) % 360.0) - 180.0
    zone = int(math.floor((lon + 180.0) / 6.0)) + 1
    zone = min(max(zone, 1), 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32
    elif 72.0 <= lat < 84.0 and 0.0 <= lon < 42.0:
        zone = 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37
    return zone


#: Latitudes beyond which UTM is undefined and UPS is used instead.
UTM_NORTH_LIMIT = 84.0
UTM_SOUTH_LIMIT = -80.0
UPS_NORTH = "EPSG:32661"
UPS_SOUTH = "EPSG:32761"


def utm_crs_for(lon: float, lat: float) -> str:
    """The output CRS of a position: its WGS 84 UTM zone, ``"EPSG:326zz"`` north of the equator (lat >= 0),
    else ``"EPSG:327zz"``; beyond 84°N ``"EPSG:32661"`` (UPS North), beyond 80°S ``"EPSG:32761"`` (UPS South)."""
    if lat > UTM_NORTH_LIMIT:
        return UPS_NORTH
    if lat < UTM_SOUTH_LIMIT:
        return UPS_SOUTH
    zone = utm_zone_for(lon, lat)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _as_crs(crs: Any) -> CRS:
    return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)


def native_gsd_m(crs: Any, transform: Any, width: int, height: int) -> tuple[float, tuple[float, float]]:
    """Ground sample distance (metres) of a raster, measured in the UTM zone of its centre.

    The centre pixel's neighbourhood (half a pixel either side along columns and along rows) is
    projected to the local UTM zone; the GSD is the mean of the two step lengths.  Returns
    ``(gsd, (lon, lat))`` with the centre in WGS 84 degrees.
    """
    crs = _as_crs(crs)
    t = transform if isinstance(transform, Affine) else Affine(*tuple(transform)[:6])
    cx, cy = width / 2.0, height / 2.0
    cols = [cx, cx - 0.5, cx + 0.5, cx, cx]
    rows = [cy, cy, cy, cy - 0.5, cy + 0.5]
    xs, ys = zip(*(t @ (c, r) for c, r in zip(cols, rows)))
    lons, lats = warp_transform(crs, "EPSG:4326", list(xs), list(ys))
    lon, lat = float(lons[0]), float(lats[0])
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 90:
        raise ValueError(f"scene centre does not transform to WGS 84 ({lon}, {lat})")
    ux, uy = warp_transform(crs, utm_crs_for(lon, lat), list(xs), list(ys))
    step_x = math.hypot(ux[2] - ux[1], uy[2] - uy[1])
    step_y = math.hypot(ux[4] - ux[3], uy[4] - uy[3])
    return (step_x + step_y) / 2.0, (lon, lat)


#: Relative tolerance of the GSD rule's tie (measurement noise of a native GSD is ~1e-9 relative).
TIE_REL_TOL = 1e-6


def choose_target_gsd(native: float, *, targets: Sequence[float] = (0.3, 0.5),
                      keep_range: tuple[float, float] = (0.25, 0.5), tolerance: float = 0.02,
                      file: str = "") -> float:
    """Output GSD for a scene of native GSD ``native`` (metres), or raise SceneRejected.

    * ``native > keep_range[1] * (1 + tolerance)`` -> ``SceneRejected(file, "GSD 0.80 m is coarser than 0.5 m")``;
    * ``keep_range[0] <= native <= keep_range[1]`` -> ``round(native, 2)``; up to ``tolerance`` above
      ``keep_range[1]`` -> ``keep_range[1]``;
    * ``native < keep_range[0]`` -> the target whose ratio target / native is closest to an integer
      (the downsampling factor that is closest to exact box averaging); ties go to the finer target.  Two
      distances to an integer are a tie when they differ by less than :data:`TIE_REL_TOL` times the ratio
      (a 0.2 m image measured as 0.1999999996 m is a tie between 1.5 and 2.5: 0.3 m, not 0.5 m).
    """
    lo, hi = keep_range
    if not (isinstance(native, (int, float)) and math.isfinite(native) and native > 0):
        raise SceneRejected(file, f"GSD {native!r} is not a positive number")
    if native > hi * (1 + tolerance):
        raise SceneRejected(file, f"GSD {native:.2f} m is coarser than {hi:g} m")
    if native > hi:
        return float(hi)
    if native >= lo:
        return min(round(float(native), 2), float(hi))
    best: float | None = None
    best_err = math.inf
    for target in sorted(float(t) for t in targets):
        ratio = target / native
        err = abs(ratio - round(ratio))
        if err < best_err - TIE_REL_TOL * ratio:
            best, best_err = target, err
    assert best is not None, "targets must not be empty"
    return best


def crs_label(crs: CRS) -> str:
    """``"EPSG:xxxx"`` when the CRS has an EPSG code, else its WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


def crs_short(crs: Any, limit: int = 60) -> str:
    """A CRS for a reason: ``"EPSG:xxxx"``, else its name (cut to ``limit`` characters), never a whole WKT or
    PROJJSON."""
    try:
        c = _as_crs(crs)
        epsg = c.to_epsg()
        if epsg is not None:
            return f"EPSG:{epsg}"
        from pyproj import CRS as ProjCRS

        name = ProjCRS.from_wkt(c.to_wkt()).name or "unnamed CRS"
    except Exception:  # noqa: BLE001 - whatever the CRS is, the reason must stay short
        name = "an unrecognised CRS"
    name = " ".join(str(name).split())
    return f"'{name[: limit - 3]}...'" if len(name) > limit else f"'{name}'"


