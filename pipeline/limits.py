"""The limits that keep hostile input bounded, with their safe defaults, in one record.

A source controls file names, sizes, counts, archive contents, server behaviour and the addresses its URLs
lead to.  Everything the fetch and catalog stages do with such input is bounded by one of the fields of
:class:`Limits`; a build sets them from ``[PipelineConfig]`` keys of the same name (``tasks.config.limits``),
library callers pass a :class:`Limits` or get :data:`DEFAULT_LIMITS`.  Exceeding one raises a named error
whose reason names the key (:class:`pipeline.errors.LimitExceeded`, ``SceneRejected``, ``SourcesError``, ...).

The limits of the raster plan (``max_grid_pixels``) are processing parameters
(:class:`pipeline.params.ProcessingParams`), because they decide which scenes a work folder holds.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from typing import Any

from pipeline.errors import ConfigError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

#: Default of the processing parameter ``max_grid_pixels``: most output pixels one scene may produce
#: (about 1900 tiles of 1024x1024; 180 km² at 0.3 m).
MAX_GRID_TOTAL = 2_000_000_000


@dataclass(frozen=True)
class Limits:
    """Bounds on what a source may make the pipeline fetch, extract, read and reach (README, "Limits")."""

    # -- network policy (pipeline.sources.netpolicy) -----------------------------------------------------
    #: Allow URLs that resolve to loopback, link-local, private, multicast or unspecified addresses.
    allow_private_networks: bool = False
    #: Networks (CIDR, e.g. ``"10.0.0.0/24"``) allowed although they are not public; narrower than the above.
    allowed_networks: tuple[str, ...] = ()
    #: Redirects followed per request (each hop is checked by the network policy).
    max_redirects: int = 5

    # -- downloads (pipeline.sources.download, oam) ------------------------------------------------------
    #: Largest file a download may bring (Content-Length and the bytes actually streamed).
    download_max_bytes: int = 64 * GiB
    #: Longest one file's download may take, all attempts and pauses included (seconds).
    download_deadline_s: float = 6 * 3600.0
    #: Slowest average rate (bytes/s) over the last ``download_rate_window_s`` seconds of a transfer.
    download_min_rate: float = 8 * KiB
    #: The window of the minimum rate, also the grace period at the start of every request (seconds).
    download_rate_window_s: float = 60.0
    #: Largest JSON API response (OpenAerialMap catalog pages).
    response_max_bytes: int = 32 * MiB

    # -- archives (pipeline.sources.archive) -------------------------------------------------------------
    #: Largest total uncompressed size of an archive's members.
    archive_max_bytes: int = 64 * GiB
    #: Most entries (files and folders) in one archive.
    archive_max_entries: int = 200_000
    #: Highest compression ratio (uncompressed / compressed) of an entry, once it is over 1 MiB.
    archive_max_ratio: float = 200.0

    # -- local files (pipeline.sources.localfs, adapters) ------------------------------------------------
    #: Largest local file (or symlink target) a local source may hold; symlinks only to regular files.
    local_file_max_bytes: int = 64 * GiB
    #: Largest side-car a catalog reads whole (xBD label JSON, OpenAerialMap records, geotransforms JSON).
    sidecar_max_bytes: int = 64 * MiB

    # -- configuration (pipeline.sources.config) ---------------------------------------------------------
    #: Largest ``sources.yaml``.
    sources_max_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        for net in self.allowed_networks:
            try:
                ipaddress.ip_network(str(net), strict=False)
            except ValueError as exc:
                raise ConfigError(f"allowed_networks: {str(net)[:60]!r} is not a network (CIDR): {exc}") from None
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{f.name} must not be negative, got {value}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Limits:
        """A Limits from ``values`` (keys = field names; missing keys keep their defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown limits: {', '.join(unknown)}")
        out = dict(values)
        if "allowed_networks" in out:
            out["allowed_networks"] = tuple(str(n) for n in out["allowed_networks"])
        return cls(**out)


#: The defaults: what a library call without ``limits=`` gets.
DEFAULT_LIMITS = Limits()


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (for reasons that name a limit)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_sizes(size: float, limit: float) -> tuple[str, str]:
    """``size`` and the ``limit`` it is over as :func:`human_bytes` writes them, or both in bytes where those
    read alike (a file a few bytes over a limit was "29.2 KiB, over local_file_max_bytes (29.2 KiB)")."""
    shown = human_bytes(size), human_bytes(limit)
    return shown if shown[0] != shown[1] else (f"{int(size):,} B", f"{int(limit):,} B")
