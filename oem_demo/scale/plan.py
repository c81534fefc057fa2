"""The scene plan of the synthetic OpenEarthMap-shaped source: which scenes, where, how big, in what form.

Each region gets a *primary* imagery profile (and sometimes a secondary one), as real regions come from
one or two providers:

============  ==========================  ===================  ===================================
profile       CRS                          ground GSD (m)       file
============  ==========================  ===================  ===================================
national      national grid (LV95, BNG,    0.25-0.5             JPEG-YCbCr q90, some + internal mask
              Lambert-93, LAEA, ftUS, ...)                       (nodata edge), fixed sheet sizes
utm           local WGS 84 UTM (N or S)    0.25-0.5             JPEG-YCbCr q90, some + internal mask
sat           EPSG:4326 (degrees)          0.3-0.5              DEFLATE RGB, some nodata=0 edges
merc          EPSG:3857                    0.3-0.45             JPEG-YCbCr q90
drone         EPSG:3857                    0.1-0.18 (resampled)  DEFLATE RGBA (alpha) or JPEG + mask
coarse        EPSG:4326                    0.6-0.8 (rejected)   DEFLATE or JPEG
============  ==========================  ===================  ===================================

Scene sizes follow from a number of whole tiles per axis at the pipeline's target GSD plus a random
leftover (a quarter of the axes overhang by < 5 %, which the lattice rule turns into one more tile) or,
for national sheets, from fixed sheet sizes; sources stay within 2048-20000 px per axis.  The scenes of a
region are packed in rows around its city centre (not overlapping), so every scene centre maps back to
the region through the pipeline's nearest-city rule.  The expected tiles of every scene are computed by
:func:`geo.expect` at its final position; scenes whose count a pixel could change are resized.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
from rasterio.crs import CRS

from oem_demo.scale.geo import TILE, Expectation, expect, georeference, target_gsd, utm_crs
from oem_demo.scale.regions import Region, check_location

MIN_PX, MAX_PX = 2048, 20000


@dataclass(frozen=True)
class Profile:
    """An imagery provider's product (see module doc)."""

    name: str
    crs: str                                   # "utm", "national" or an EPSG code
    gsds: tuple[float, ...]
    variants: tuple[tuple[str, str, float], ...]   # (format, nodata kind, weight)
    kmax: int                                  # most tiles per axis
    sheets: tuple[int, ...] = ()               # fixed square sheet sizes (px)


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("national", "national", (0.25, 0.3, 0.4, 0.5), (("jpeg", "none", 0.8), ("jpeg", "mask", 0.2)), 10,
            (4000, 5000, 6000, 8000, 10000)),
    Profile("utm", "utm", (0.25, 0.3, 0.3, 0.4, 0.5), (("jpeg", "none", 0.75), ("jpeg", "mask", 0.25)), 8),
    Profile("sat", "EPSG:4326", (0.3, 0.5, 0.5), (("deflate", "none", 0.6), ("deflate", "nodata", 0.4)), 6),
    Profile("merc", "EPSG:3857", (0.3, 0.35, 0.45), (("jpeg", "none", 1.0),), 8),
    Profile("drone", "EPSG:3857", (0.1, 0.125, 0.15, 0.15, 0.18),
            (("deflate", "alpha", 0.4), ("jpeg", "mask", 0.6)), 6),
    Profile("coarse", "EPSG:4326", (0.6, 0.75, 0.8), (("deflate", "none", 0.5), ("jpeg", "none", 0.5)), 3),
)}
_FILE_WORD = {"national": "ortho", "utm": "aerial", "sat": "sat", "merc": "tile", "drone": "uav", "coarse": "coarse"}


@dataclass(frozen=True)
class SceneSpec:
    """Everything a scene's files and expectations depend on (JSON-able with :func:`dataclasses.asdict`)."""

    region: str
    country_code: str
    continent: str
    name: str
    profile: str
    crs: str
    pixel: float                    # CRS units per pixel (nominal)
    gsd: float                      # nominal ground GSD (m)
    width: int
    height: int
    transform: tuple[float, ...]
    fmt: str                        # "jpeg" (YCbCr q90) | "deflate"
    mask: str                       # "none" | "mask" (internal) | "alpha" (band 4) | "nodata" (value 0)
    valid: tuple[tuple[float, float], ...] | None   # valid-area polygon, pixel coordinates
    biome: str
    grade: tuple[float, float, float, float]
    seed: int
    city_xy: tuple[float, float]    # city centre in the scene frame (m, x east, y south of top-left)
    city_radius: float
    bias: float
    lon: float
    lat: float
    native_gsd: float
    target_gsd: float | None
    utm: str
    grid: tuple[int, int]
    tiles: int
    dropped: int
    reject: str | None

    @property
    def rel_path(self) -> str:
        return f"{self.region}/{self.name}.tif"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SceneSpec:
        """Inverse of :meth:`to_json` (also from a JSON round trip, where tuples became lists)."""
        fix = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        if data.get("valid"):
            fix["valid"] = tuple(tuple(p) for p in data["valid"])
        return cls(**{**data, **fix})


@dataclass
class _Draft:
    profile: Profile
    crs: str
    pixel: float
    gsd: float
    width: int
    height: int
    fmt: str
    mask: str
    valid: np.ndarray | None
    snap: float | None
    exp: Expectation | None = None

    @property
    def x(self) -> Expectation:
        """The expectation of the draft (set by :func:`_evaluate`)."""
        assert self.exp is not None, "draft not evaluated"
        return self.exp
    transform: tuple[float, ...] = ()


def scene_seed(seed: int, key: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode())]).generate_state(1)[0])


def _crs_for(profile: Profile, region: Region) -> tuple[str, float, float | None]:
    """(CRS, unit length in metres, origin snap) of a profile in a region."""
    if profile.crs == "national" and region.national_crs:
        crs = region.national_crs
    elif profile.crs in ("utm", "national"):
        crs = utm_crs(region.lon, region.lat)
    else:
        return profile.crs, 1.0, None
    unit = float(CRS.from_user_input(crs).linear_units_factor[1])
    return crs, unit, 1.0


def _valid_polygon(rng: np.random.Generator, mask: str, w: int, h: int) -> np.ndarray | None:
    """Valid-area polygon (pixel coordinates) of a scene with nodata edges: a drone survey outline on all
    sides (alpha), or one or two slanted strip edges (mask / nodata value)."""
    if mask == "none":
        return None
    sides = [0, 1, 2, 3] if mask == "alpha" else list(rng.choice(4, size=int(rng.integers(1, 3)), replace=False))
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    inward = np.array([[0, 1], [-1, 0], [0, -1], [1, 0]], float)
    pts = []
    for s in range(4):
        a, b = corners[s], corners[(s + 1) % 4]
        k = np.linspace(0, 1, 12, endpoint=False)
        depth = np.zeros_like(k)
        if s in sides:
            span = (h if s in (0, 2) else w) * (0.06 if mask == "alpha" else 0.1)
            d0, d1 = rng.uniform(0.005, 1.0, 2) * span
            depth = d0 + (d1 - d0) * k + rng.uniform(-0.05, 0.05, k.size) * span
            depth = np.clip(depth, 2, None)
        pts.append(a + (b - a) * k[:, None] + inward[s] * depth[:, None])
    poly = np.concatenate(pts)
    poly[:, 0] = np.clip(poly[:, 0], 0, w)
    poly[:, 1] = np.clip(poly[:, 1], 0, h)
    return np.round(poly, 2)


def _axis_px(rng: np.random.Generator, k: int, ratio: float, max_side: int) -> int:
    """Source pixels for ``k`` tiles along an axis: a random leftover, or an overhang of < 5 %."""
    left = -rng.uniform(10, 42) if rng.random() < 0.25 else rng.uniform(60, 800)
    return int(np.clip(round((k * TILE + left) * ratio), MIN_PX, max_side))


def _draft(rng: np.random.Generator, which: str, region: Region, remaining: int, max_side: int = MAX_PX) -> _Draft:
    """A scene of profile ``which`` (``"name"`` or ``"name:format:nodata kind"`` to force the variant)
    sized for about ``remaining`` tiles (at most the profile's size)."""
    name, _, forced = which.partition(":")
    profile = PROFILES[name]
    gsd = float(rng.choice(profile.gsds))
    crs, unit, snap = _crs_for(profile, region)
    pixel = gsd if unit == 1.0 else round(gsd / unit * 2) / 2   # feet: whole or half feet
    ground = pixel * unit
    ratio = (target_gsd(ground) or 0.5) / ground
    kmin = max(1, math.ceil(MIN_PX / ratio / TILE - 0.04))
    kmax = max(kmin, min(profile.kmax, int(max_side / ratio / TILE)))
    if profile.sheets:
        sheets = [s for s in profile.sheets if s <= max_side] or [min(profile.sheets)]
        fits = [s for s in sheets if (s / ratio / TILE) ** 2 <= max(remaining, 4) * 1.15]
        w = h = int(fits[-1] if fits else sheets[0])
    else:
        kx = int(rng.integers(kmin, kmax + 1))
        ky = int(np.clip(round(remaining / kx + rng.uniform(-0.5, 0.5)), kmin, min(kmax, 2 * kx)))
        w, h = _axis_px(rng, kx, ratio, max_side), _axis_px(rng, ky, ratio, max_side)
    fmts = profile.variants
    fmt, mask, _ = fmts[int(rng.choice(len(fmts), p=np.array([v[2] for v in fmts]) / sum(v[2] for v in fmts)))]
    if forced:
        fmt, mask = forced.split(":")
    return _Draft(profile, crs, pixel, ground, w, h, fmt, mask, _valid_polygon(rng, mask, w, h),
                  snap * pixel if snap else None)


def _evaluate(d: _Draft, lon: float, lat: float) -> _Draft:
    d.transform = georeference(d.crs, lon, lat, d.pixel, d.width, d.height, calibrate=d.snap is None,
                               snap=d.snap)
    d.exp = expect(d.crs, d.transform, d.width, d.height, d.valid)
    return d


def _resolve(rng: np.random.Generator, d: _Draft, lon: float, lat: float) -> _Draft:
    """Evaluate at (lon, lat); while a pixel could change the count, resize the scene (lattice
    remainder) or redraw its nodata edges (a tile's nodata share near 5 %)."""
    _evaluate(d, lon, lat)
    for attempt in range(60):
        if not d.x.ambiguous:
            return d
        if d.x.ambiguous == "nodata" and d.valid is not None and attempt % 2 == 0:
            d.valid = _valid_polygon(rng, d.mask, d.width, d.height)
        else:
            w0, h0 = d.width, d.height
            step = rng.integers(5, 40, 2) * np.where(np.array([w0, h0]) > MAX_PX - 50, -1, 1)
            d.width, d.height = w0 + int(step[0]), h0 + int(step[1])
            if d.valid is not None:
                d.valid = np.round(d.valid * [d.width / w0, d.height / h0], 2)
        _evaluate(d, lon, lat)
    raise RuntimeError(f"could not size an unambiguous {d.profile.name} scene at ({lon}, {lat})")


def _fill(rng: np.random.Generator, region: Region, target: int, cap: int | None,
          profiles: tuple[str, str | None], max_side: int) -> list[_Draft]:
    """Drafts of a region until its expected tiles (evaluated at the city centre) reach ``target``,
    never above ``cap``."""
    primary, secondary = profiles
    drafts: list[_Draft] = []
    total = 0
    while total < target and len(drafts) < 60:
        name = secondary if secondary and drafts and rng.random() < 0.3 else primary
        remaining, best = target - total, None
        for _ in range(30):
            d = _resolve(rng, _draft(rng, name, region, remaining, max_side), region.lon, region.lat)
            if not d.x.tiles or (cap is not None and total + d.x.tiles > cap):
                continue
            if best is None or abs(d.x.tiles - remaining) < abs(best.x.tiles - remaining):
                best = d
            if d.x.tiles <= remaining * 1.3 + 6:
                break
            remaining = max(1, int(remaining * 0.8))
        if best is None:
            break
        drafts.append(best)
        total += best.x.tiles
    if not drafts:
        raise RuntimeError(f"no scene of {profiles} fits region {region.name} (target {target}, cap {cap})")
    return drafts


def _pack(rng: np.random.Generator, sizes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Centres (east, north metres from the pack centre) of rectangles ``sizes`` (w, h metres) packed in
    rows with 30-150 m gaps, largest first; the pack is roughly square."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][1])
    limit = math.sqrt(sum(w * h for w, h in sizes)) * 1.3 + max(w for w, _ in sizes) * 0.5
    pos: dict[int, tuple[float, float]] = {}
    x = y = row_h = 0.0
    for i in order:
        w, h = sizes[i]
        if x > 0 and x + w > limit:
            x, y, row_h = 0.0, y + row_h + rng.uniform(30, 150), 0.0
        pos[i] = (x + w / 2, -(y + h / 2))
        x += w + rng.uniform(30, 150)
        row_h = max(row_h, h)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    return [(pos[i][0] - cx, pos[i][1] - cy) for i in range(len(sizes))]


def _offset_lonlat(lon: float, lat: float, east: float, north: float) -> tuple[float, float]:
    return (lon + east / (111_320.0 * math.cos(math.radians(lat))), lat + north / 110_574.0)


def _place(rng: np.random.Generator, region: Region, sizes: list[tuple[float, float]]
           ) -> tuple[list[tuple[float, float]], tuple[float, float]]:
    """Packed scene centres and a shift of the pack off the city centre (up to 3 km, a tenth of the
    distance to the next big city) such that every scene centre maps back to the region through the
    pipeline's ``locate`` (near borders and coasts some shifts do not); smaller shifts are tried last."""
    centres = _pack(rng, sizes)
    limit = min(0.1 * region.isolation_km * 1000, 3000)
    for attempt in range(16):
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, limit) * (1 - attempt / 16)
        shift = (dist * math.cos(ang), dist * math.sin(ang))
        if all(check_location(region, *_offset_lonlat(region.lon, region.lat, e + shift[0], n + shift[1])) is None
               for e, n in centres):
            break
    return centres, shift


def plan_region(seed: int, region: Region, target: int, cap: int | None,
                profiles: tuple[str, str | None], extra: tuple[str, ...] = (),
                max_side: int = MAX_PX) -> list[SceneSpec]:
    """The scenes of one region: ``target`` expected tiles (at most ``cap``) of the given primary /
    secondary profiles, plus one scene of each profile in ``extra`` (e.g. ``coarse``, rejected).
    Profiles are named as :func:`_draft` takes them; no source side exceeds ``max_side`` pixels."""
    rng = np.random.default_rng(scene_seed(seed, region.name))
    drafts = _fill(rng, region, target, cap, profiles, max_side)
    drafts += [_resolve(rng, _draft(rng, p, region, 9, max_side), region.lon, region.lat) for p in extra]
    centres, shift = _place(rng, region, [(d.width * d.gsd, d.height * d.gsd) for d in drafts])
    radius = float(np.clip(1500 * (region.population / 300_000) ** 0.4, 1200, 7000))
    bias, grade = rng.normal(0, 0.08), (*rng.uniform(0.93, 1.07, 3), rng.uniform(0.92, 1.1))
    counters: dict[str, int] = {}
    specs = []
    for d, (e, n) in zip(drafts, centres):
        e, n = e + shift[0], n + shift[1]
        lon, lat = _offset_lonlat(region.lon, region.lat, e, n)
        _resolve(rng, d, lon, lat)
        word = _FILE_WORD[d.profile.name]
        counters[word] = counters.get(word, 0) + 1
        name = f"{region.name}_{word}_{counters[word]:02d}"
        x = d.x
        wm, hm = d.width * d.gsd, d.height * d.gsd
        specs.append(SceneSpec(
            region=region.name, country_code=region.country_code, continent=region.continent, name=name,
            profile=d.profile.name, crs=d.crs, pixel=d.pixel, gsd=round(d.gsd, 6), width=d.width,
            height=d.height, transform=tuple(float(v) for v in d.transform), fmt=d.fmt, mask=d.mask,
            valid=None if d.valid is None else tuple(map(tuple, d.valid.tolist())), biome=region.biome,
            grade=cast(tuple[float, float, float, float], tuple(round(float(v), 4) for v in grade)),
            seed=scene_seed(seed, f"{region.name}/{name}"),
            city_xy=(round(wm / 2 - e, 2), round(hm / 2 + n, 2)), city_radius=round(radius, 1),
            bias=round(float(bias), 4), lon=round(x.lon, 7), lat=round(x.lat, 7),
            native_gsd=round(x.native_gsd, 5), target_gsd=x.target_gsd, utm=x.utm, grid=x.grid,
            tiles=x.tiles, dropped=x.dropped, reject=x.reject))
    return specs
