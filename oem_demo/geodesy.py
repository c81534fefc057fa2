"""Where the demo files lie and how they are georeferenced: file sizes, file centres and geotransforms that
realise each scene's ground GSD exactly in its CRS (module policies: the package docstring, *Geometry*)."""
from __future__ import annotations

import math

from pyproj import Transformer

from oem_demo.scenes import BORDER_MARGIN, MARGIN, TILE, DemoScene

_WGS84_A = 6378137.0
_WGS84_F = 1 / 298.257223563
_WGS84_E2 = _WGS84_F * (2 - _WGS84_F)


def _radii(lat: float) -> tuple[float, float]:
    """WGS84 meridional (M) and prime-vertical (N) radii of curvature at ``lat`` degrees."""
    s = math.sin(math.radians(lat))
    w = 1 - _WGS84_E2 * s * s
    return _WGS84_A * (1 - _WGS84_E2) / w ** 1.5, _WGS84_A / math.sqrt(w)


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Ground metres per degree of (longitude, latitude) at ``lat`` on the WGS84 ellipsoid."""
    m, n = _radii(lat)
    return n * math.cos(math.radians(lat)) * math.pi / 180, m * math.pi / 180


def pixel_size(crs: str, gsd: float, lat: float) -> tuple[float, float]:
    """CRS units per pixel (x, y) that realise a ground GSD of ``gsd`` metres at ``lat``."""
    if crs == "EPSG:4326":
        mx, my = metres_per_degree(lat)
        return gsd / mx, gsd / my
    if crs == "EPSG:3857":
        _, n = _radii(lat)
        p = gsd * _WGS84_A / (n * math.cos(math.radians(lat)))
        return p, p
    return gsd, gsd


def scene_dims(sc: DemoScene, size: str) -> tuple[int, int]:
    """Pixel width and height of each of the row's files."""
    if sc.layout == "xbd":
        return 1024, 1024
    _, cols, rows = sc.spec(size)
    tg = sc.target_gsd or sc.gsd
    f = BORDER_MARGIN if sc.nodata != "none" else MARGIN
    return (int(math.ceil(cols * TILE * tg * f / sc.gsd - 1e-9)),
            int(math.ceil(rows * TILE * tg * f / sc.gsd - 1e-9)))


def file_centres(sc: DemoScene, size: str, w: int, h: int) -> list[tuple[float, float]]:
    """(lon, lat) centres of the row's files: a compact grid around the city centre, 15 % gaps."""
    n = sc.spec(size)[0]
    ncol = int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    sx, sy = w * sc.gsd * 1.15, h * sc.gsd * 1.15
    mx, my = metres_per_degree(sc.lat)
    out = []
    for i in range(n):
        c, r = i % ncol, i // ncol
        east = (c - (ncol - 1) / 2) * sx
        north = -(r - (nrow - 1) / 2) * sy
        out.append((sc.lon + east / mx, sc.lat + north / my))
    return out


def geotransform(crs: str, lon: float, lat: float, gsd: float, w: int, h: int) -> tuple[float, ...]:
    """Affine (a, b, c, d, e, f) of a north-up grid of ``w x h`` pixels centred on (lon, lat)."""
    px, py = pixel_size(crs, gsd, lat)
    if crs == "EPSG:4326":
        x, y = lon, lat
        x0, y0 = round(x - w / 2 * px, 9), round(y + h / 2 * py, 9)
    else:
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        x0, y0 = round(x - w / 2 * px, 2), round(y + h / 2 * py, 2)
    return (px, 0.0, x0, 0.0, -py, y0)
