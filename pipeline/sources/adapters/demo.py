"""Demo adapter: a fetched demo folder holding one small example of every real layout.

:func:`fetch_demo` generates it with :func:`oem_demo.generate.generate_demo` (imported only then: the
generator is not part of the runtime library), writing, under the demo source's folder::

    xbd/       the xBD layout      (xbd/train/images, labels, landcover/<stem>.png)
    inria/     the Inria layout    (inria/train/images, gt, landcover/<stem>.tif)
    spacenet/  the SpaceNet layout (AOI_<k>_<City>_Train/<product>, geojson/buildings, landcover)
    local/     the local layout    (local/<region>/<name>.tif, local/labels/..., local/footprints/...)

Each present sub-folder is read by the real adapter of that kind with that kind's default options
(plus the demo source's common options such as ``region_override``).  The resulting scenes keep the
demo source's name, licence and attribution (no upstream citation: the demo data is synthetic), take ``kind`` =
the delegate's kind and ``scene_id`` =
``<kind>-<delegate scene id>``.  Absent sub-folders are skipped; a folder with none of them yields no
scene (``SceneRejected``).  Per-scene rejections follow :meth:`Adapter.scenes`' ``rejected`` policy.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from pipeline import atomic
from pipeline.errors import PipelineInputError, SceneRejected
from pipeline.limits import Limits
from pipeline.scene import Scene
from pipeline.sources.adapters.base import Adapter
from pipeline.sources.adapters.inria import InriaAdapter
from pipeline.sources.adapters.local import LocalAdapter
from pipeline.sources.adapters.spacenet import SpaceNetAdapter
from pipeline.sources.adapters.xbd import XbdAdapter
from pipeline.sources.config import SourceConfig
from pipeline.sources.download import file_digests
from pipeline.sources.options import COMMON_OPTIONS, KIND_OPTIONS


class DemoAdapter(Adapter):
    """Delegates each sub-folder of the demo source to the real adapter of that kind."""

    kind: ClassVar[str] = "demo"
    title: ClassVar[str] = "demo"
    citation: ClassVar[str] = ""
    label_encoding: ClassVar[str] = "as the delegate layouts"
    #: sub-folder -> adapter class, in scan order.
    delegates: ClassVar[dict[str, type[Adapter]]] = {
        "xbd": XbdAdapter,
        "inria": InriaAdapter,
        "spacenet": SpaceNetAdapter,
        "local": LocalAdapter,
    }

    def empty_reason(self, root: Path, source: SourceConfig) -> str:
        return f"demo folder holds none of the sub-folders {', '.join(f'{k}/' for k in self.delegates)}"

    @staticmethod
    def delegate_source(source: SourceConfig, kind: str) -> SourceConfig:
        """The demo source seen as a source of ``kind``: same name/licence, that kind's default options."""
        opts = {k: default for k, (_, default) in KIND_OPTIONS[kind].items()}
        opts.update({k: (source.options or {}).get(k, default) for k, (_, default) in COMMON_OPTIONS.items()})
        return replace(source, kind=kind, options=opts)

    def scenes(
        self, root: Path, source: SourceConfig, rejected: list[PipelineInputError] | None = None,
        limits: Limits | None = None,
    ) -> list[Scene]:
        """Scenes of every present delegate sub-folder, ids prefixed ``<kind>-``, sorted by id."""
        root = Path(root)
        out: list[Scene] = []
        present = False
        for sub, cls in self.delegates.items():
            folder = root / sub
            if not folder.is_dir():
                continue
            present = True
            delegate = cls()
            for s in delegate.scenes(folder, self.delegate_source(source, delegate.kind), rejected, limits):
                extra = {k: v for k, v in s.extra.items() if k != "citation"}  # demo data is synthetic
                out.append(replace(s, kind=delegate.kind, scene_id=f"{delegate.kind}-{s.scene_id}",
                                   license=source.license, attribution=source.attribution, source=source.name,
                                   extra=extra))
        if not root.is_dir() or not present:
            raise SceneRejected(str(root), self.empty_reason(root, source))
        return sorted(out, key=lambda s: s.scene_id)

    def _scan(self, root: Path, source: SourceConfig) -> Iterable[Callable[[], Scene]]:
        """Unused: :meth:`scenes` delegates whole sub-folders."""
        return iter(())


def fetch_demo(source: SourceConfig, dest: Path) -> dict[str, Any]:
    """Generate the demo of ``source`` (``options.seed``, ``options.size``) into ``dest`` atomically and return
    its fetch record (as :func:`pipeline.sources.fetch.fetch_source` does for the other kinds; location
    ``builtin:demo``, every file with its size and sha256, the generator's scene records as ``items``)."""
    from oem_demo import generate  # the synthetic-data generator, needed only here

    with atomic.atomic_path(dest) as tmp:
        summary = generate.generate_demo(tmp, seed=int(source.options["seed"]), size=str(source.options["size"]))
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    return {
        "source": source.name, "kind": source.kind, "location": "builtin:demo",
        "license": source.license, "attribution": source.attribution, "root": str(dest),
        "files": [
            {"path": str(p.relative_to(dest)), "url": None, "bytes": p.stat().st_size,
             "sha256": file_digests(p)["sha256"], "license": source.license, "attribution": source.attribution}
            for p in files
        ],
        "items": summary.get("scenes", []),
    }
