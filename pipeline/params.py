"""Processing parameters that determine the pixels of every output, and their fingerprint.

Work folders are named by the fingerprint (``data/work/<fingerprint>/``), so changing a parameter that
affects outputs (target GSDs, tile size, nodata policy, code version) makes the affected outputs rebuild
instead of silently reusing stale ones.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import __version__
from pipeline.limits import MAX_GRID_TOTAL


@dataclass(frozen=True)
class ProcessingParams:
    target_gsds: tuple[float, ...] = (0.3, 0.5)
    tile_size: int = 1024
    max_nodata_fraction: float = 0.05
    #: Most output pixels a scene may produce (a larger one is rejected at planning).
    max_grid_pixels: int = MAX_GRID_TOTAL
    code_version: str = __version__

    def fingerprint(self) -> str:
        """12 hex digits of sha256 over the canonical JSON of the parameters."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["target_gsds"] = list(self.target_gsds)
        return d


#: Tile sizes a build accepts (pixels): below, a scene makes tens of thousands of files of a few pixels (a typo
#: for 1024 ran for hours); above, one tile's label and segment passes hold hundreds of MB.
TILE_SIZE_RANGE = (64, 8192)
#: The GSD range of the benchmark (m): what finer sources may be resampled to (``pipeline.raster.gsd``).
TARGET_GSD_RANGE = (0.25, 0.5)


def config_problems(*, tile_size: Any, target_gsds: Any, max_nodata_fraction: Any, split_trials: Any,
                    region_min: Any, region_max: Any, label_every: Any, selection_epochs: Any,
                    random_fraction: Any, max_grid_pixels: Any) -> list[str]:
    """What is wrong with a build's processing and dataset settings (``[PipelineConfig]``), one line each; checked
    before anything runs, where a bad value used to fail a late task after all the pixel work (a region_min over
    region_max in the selection, a max_nodata_fraction over 1 in the manifest's schema) or pass (a target GSD
    outside the benchmark's range)."""
    out = []

    def number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not math.isfinite(value) or not lo <= value <= hi:
            kind = "an integer" if integer else "a number"
            out.append(f"{name} must be {kind} from {lo:g} to {hi:g}, not {value!r}")

    number("tile_size", tile_size, *TILE_SIZE_RANGE, integer=True)
    gsds = list(target_gsds) if isinstance(target_gsds, (list, tuple)) else None
    if not gsds:
        out.append(f"target_gsds must list at least one GSD in metres, not {target_gsds!r}")
    for gsd in gsds or ():
        number("each of target_gsds", gsd, *TARGET_GSD_RANGE)
    number("max_nodata_fraction", max_nodata_fraction, 0, 1)
    number("random_fraction", random_fraction, 0, 1)
    for name, value in (("split_trials", split_trials), ("label_every", label_every),
                        ("selection_epochs", selection_epochs), ("region_min", region_min),
                        ("region_max", region_max), ("max_grid_pixels", max_grid_pixels)):
        number(name, value, 1, math.inf, integer=True)
    if isinstance(region_min, int) and isinstance(region_max, int) and region_min > region_max:
        out.append(f"region_min ({region_min}) must not be over region_max ({region_max})")
    return out
