"""Source adapters: one per upstream layout, each turning a fetched folder into Scene records.

``ADAPTERS`` maps a source ``kind`` to ``"module:Class"``; classes are imported lazily so that a kind
whose module is missing or broken fails only when that kind is used.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from pipeline.errors import PipelineInputError
from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter
from pipeline.sources.config import SourceConfig

ADAPTERS: dict[str, str] = {
    "xbd": "pipeline.sources.adapters.xbd:XbdAdapter",
    "inria": "pipeline.sources.adapters.inria:InriaAdapter",
    "spacenet": "pipeline.sources.adapters.spacenet:SpaceNetAdapter",
    "local": "pipeline.sources.adapters.local:LocalAdapter",
    "openearthmap": "pipeline.sources.adapters.openearthmap:OpenEarthMapAdapter",
    "demo": "pipeline.sources.adapters.demo:DemoAdapter",
    "openaerialmap": "pipeline.sources.adapters.openaerialmap:OpenAerialMapAdapter",
    "stac": "pipeline.sources.adapters.stac:StacAdapter",
    "opencities": "pipeline.sources.adapters.opencities:OpenCitiesAdapter",
}


def get_adapter(kind: str) -> Adapter:
    """A new adapter instance for ``kind``; ``KeyError`` naming the known kinds for an unknown one."""
    try:
        target = ADAPTERS[kind]
    except KeyError:
        raise KeyError(f"no adapter for kind '{kind}' (known: {', '.join(sorted(ADAPTERS))})") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()


#: The acquisition period assumed for a source that documents none (no ``options.acquired_range``, no adapter
#: default): from the launch of IKONOS (1999-09-24), the first commercial sub-metre imaging satellite, to the end
#: of the year this pipeline version was released.  Bounded and honest, unlike the 1970..9999 placeholder that
#: matched every date filter; set ``options.acquired_range`` when the source's period is known.
UNKNOWN_ACQUISITION: tuple[str, str] = ("1999-09-24", "2026-12-31")


def acquired_range(source: SourceConfig) -> list[str]:
    """``[start, end]`` (ISO dates) of a source's imagery for scenes without an acquisition time:
    ``options.acquired_range``, else the adapter's documented default (xBD 2011-2019), else
    :data:`UNKNOWN_ACQUISITION`."""
    configured = (source.options or {}).get("acquired_range")
    if configured:
        return [str(configured[0])[:10], str(configured[1])[:10]]
    return list(_adapter_attribute(source.kind, "acquired_range") or UNKNOWN_ACQUISITION)


def upstream_citation(source: SourceConfig) -> str:
    """The publication the upstream dataset of ``source``'s kind asks to be cited (its adapter's ``citation``;
    ``""`` for a kind with none: a local folder, the synthetic demo, a STAC catalog)."""
    return str(_adapter_attribute(source.kind, "citation") or "")


def _adapter_attribute(kind: str, name: str):
    """A class attribute of the adapter of ``kind`` (None for an unknown kind or attribute), read without making an
    adapter."""
    target = ADAPTERS.get(kind, "")
    module_name, _, class_name = target.partition(":")
    return getattr(getattr(importlib.import_module(module_name), class_name), name, None) if target else None


def scenes_for(source: SourceConfig, root: Path, rejected: list[PipelineInputError] | None = None) -> list[Scene]:
    """The scenes of ``source`` fetched into ``root``, sorted by scene id (see ``Adapter.scenes``)."""
    return get_adapter(source.kind).scenes(Path(root), source, rejected)


__all__ = ["ADAPTERS", "UNKNOWN_ACQUISITION", "Adapter", "acquired_range", "get_adapter", "scenes_for",
           "upstream_citation"]
