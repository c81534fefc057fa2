"""Processing parameters that determine the pixels of every output, and their fingerprint.

Work folders are named by the fingerprint (``data/work/<fingerprint>/``), so changing a parameter that
affects outputs (target GSDs, tile size, nodata policy, code version) makes the affected outputs rebuild
instead of silently reusing stale ones.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

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
