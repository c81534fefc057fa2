"""The three synthetic sources: ``full`` (OpenEarthMap's shape), ``small`` (a test-sized one), ``extra``.

* ``full``: 97 regions (55 countries, 6 continents).  62 regions get 72-125 expected candidate tiles
  (sampled to 60 by the pipeline, so hard-image selection runs), 35 get 20-62 (all released).  About
  7 300 candidates, about 5 100 released.  Six regions also get one too-coarse scene (rejected).
* ``small``: 12 regions on 6 continents, about 300 candidates and 200 released (two regions of
  ~100 candidates are sampled), covering every CRS kind, file form, nodata kind and GSD case.
* ``extra``: one new region (Reykjavík) with 40-70 candidates, to add to a release built from ``full``.

Profiles per region (full): ``national`` for 70 % of the regions whose country has a modelled national
grid, else one of utm / sat / merc / drone; 30 % of the regions also have a secondary profile.
"""
from __future__ import annotations

import numpy as np

from oem_demo.scale.plan import SceneSpec, plan_region, scene_seed
from oem_demo.scale.regions import Region, extra_region, regions

SCALES = ("full", "small", "extra")
FULL_SAMPLED, SAMPLED_RANGE, KEPT_RANGE, REGION_MAX = 62, (72, 125), (20, 62), 70
N_COARSE = 6
SMALL_MAX_SIDE = 8000
_PRIMARY = {"utm": 0.45, "sat": 0.27, "merc": 0.2, "drone": 0.08}
_SECONDARY = {"utm": 0.35, "sat": 0.25, "merc": 0.25, "drone": 0.15}

#: small: (region, primary, secondary, target, extra scenes); "profile:format:nodata" forces a variant
SMALL_ROWS: tuple[tuple[str, str, str | None, int, tuple[str, ...]], ...] = (
    ("geneva", "national", None, 104, ()),                 # EPSG:2056, sampled
    ("nampula", "utm", None, 100, ()),                     # UTM 37S, sampled
    ("glasgow", "national", None, 6, ()),                  # EPSG:27700
    ("graz", "national", None, 6, ()),                     # EPSG:3035
    ("kigali", "drone:deflate:alpha", None, 6, ()),                      # EPSG:3857 at 0.1-0.2 m, resampled
    ("arequipa", "sat:deflate:nodata", None, 6, ()),                      # EPSG:4326, southern hemisphere
    ("kano", "merc", None, 6, ()),                         # EPSG:3857 at 0.3-0.45 m
    ("chengdu", "utm:jpeg:mask", None, 6, ("coarse",)),              # UTM 48N + a rejected 0.6-0.8 m scene
    ("christchurch", "national", None, 6, ()),             # EPSG:2193
    ("san_antonio", "national", None, 6, ()),              # EPSG:2278 (US survey feet)
    ("manaus", "national:jpeg:none", None, 6, ("drone:jpeg:mask",)),               # EPSG:31980 + a drone scene
    ("daejeon", "sat:deflate:none", None, 6, ()),                       # EPSG:4326, northern hemisphere
)


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _profiles(rng: np.random.Generator, region: Region) -> tuple[str, str | None]:
    primary = "national" if region.national_crs and rng.random() < 0.7 else _choice(rng, _PRIMARY)
    secondary = _choice(rng, {k: v for k, v in _SECONDARY.items() if k != primary}) if rng.random() < 0.3 else None
    return primary, secondary


def _full(seed: int) -> list[SceneSpec]:
    rng = np.random.default_rng(scene_seed(seed, "full"))
    table = regions()
    order = rng.permutation(len(table))
    sampled = set(order[:FULL_SAMPLED].tolist())
    coarse = set(rng.choice(len(table), N_COARSE, replace=False).tolist())
    specs: list[SceneSpec] = []
    for i, region in enumerate(table):
        if i in sampled:
            target, cap = int(rng.integers(SAMPLED_RANGE[0], SAMPLED_RANGE[1] + 1)), None
        else:
            target, cap = int(rng.integers(KEPT_RANGE[0], KEPT_RANGE[1] + 1)), REGION_MAX
        specs += plan_region(seed, region, target, cap, _profiles(rng, region), ("coarse",) if i in coarse else ())
    return specs


def _small(seed: int) -> list[SceneSpec]:
    by_name = {r.name: r for r in regions()}
    specs: list[SceneSpec] = []
    for name, primary, secondary, target, extra in SMALL_ROWS:
        cap = None if target > REGION_MAX else REGION_MAX
        specs += plan_region(seed, by_name[name], target, cap, (primary, secondary), extra, max_side=SMALL_MAX_SIDE)
    return specs


def _extra(seed: int) -> list[SceneSpec]:
    rng = np.random.default_rng(scene_seed(seed, "extra"))
    return plan_region(seed, extra_region(), int(rng.integers(45, 61)), REGION_MAX, ("utm", "merc"))


def plan(scale: str, seed: int = 0) -> list[SceneSpec]:
    """All scenes of a source, sorted by relative path."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    specs = {"full": _full, "small": _small, "extra": _extra}[scale](seed)
    return sorted(specs, key=lambda s: s.rel_path)
