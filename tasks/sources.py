"""Per-source tasks: fetch the raw data, then list its scenes through the source's adapter.

Both are named by digests of the source's ``sources.yaml`` entry and their code (``tasks.plan``): changing a
source's kind, location, options, licence or attribution refetches and re-catalogs that source only (a changed
licence, attribution, region or acquisition-range option alone downloads nothing again:
:mod:`pipeline.sources.rawreuse`).
"""
from __future__ import annotations

import json
from pathlib import Path

import luigi

from pipeline import atomic
from pipeline.atomic import no_space
from pipeline.errors import PipelineInputError
from pipeline.sources.outcome import failure_of, failure_record, is_source_failure
from tasks.base import PipelineTask
from tasks.config import catalog_path, cfg, limits, raw_dir, work_dir
from tasks.params import CatalogParams, SourceParams
from tasks.plan import limits_digest, verified_source


def made_by(src) -> dict[str, str]:
    """What makes a source's fetch record: the digest of its entry; of its entry but what only labels its images
    or says how their pixels and labels are read (``content``: a later raw folder of the same content starts from
    this one's files, :mod:`pipeline.sources.rawreuse`); of its entry but what only labels its images (``scenes``:
    what its scenes' work is made from besides their files, so ``python -m pipeline plan`` can tell changed
    ``options.bands`` or ``classes``); the fetch code version (so the plan can tell an edited entry from changed
    code)."""
    from pipeline.sources.object_store import source_digest
    from tasks.versions import code_version

    return {"entry": source_digest(src), "content": source_digest(src, labels=False, pixels=False),
            "scenes": source_digest(src, labels=False), "fetch_code": code_version("fetch"),
            "limits": limits_digest(src)}


def stamped(record: dict, src) -> dict:
    """The fetch record with what made it (:func:`made_by`)."""
    return {**record, "made_by": made_by(src)}


def local_hashes_path(source: str) -> Path:
    """The digests of a local source's files as its last fetch found them (:func:`fetch_source`'s ``hashes``)."""
    return work_dir() / "local-hashes" / f"{source}.json"


def _read_hashes(source: str) -> dict[str, list]:
    """:func:`local_hashes_path`'s table ({} when there is none or it cannot be read: every file is read)."""
    try:
        table = json.loads(local_hashes_path(source).read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


class FetchSource(SourceParams, PipelineTask):
    """Fetch one source into ``data/raw/<source>-<raw>/`` and record every file (URL, size, sha256, licence)."""

    def output(self):
        return luigi.LocalTarget(str(raw_dir(self.source_name, self.raw) / "fetch.json"))

    def run(self):
        src = verified_source(cfg().sources_file, self.source_name, self.raw)
        dest = raw_dir(self.source_name, self.raw) / "files"
        c = cfg()
        cache_url, endpoint = c.raw_cache_url or None, c.s3_endpoint_url or None
        if cache_url:
            from pipeline.sources.object_store import raw_cache_url, restore_raw, upload_raw

            self.set_status_message(f"restoring {src.name} from the raw cache {raw_cache_url(cache_url, src)}")
            record = restore_raw(src, dest, cache_url, endpoint_url=endpoint, progress=self._percent)
            if record is not None:
                self.set_progress_percentage(100)
                atomic.write_json(self.output().path, stamped(record, src))
                return
        from pipeline.sources.rawreuse import reusing

        try:
            with reusing(self._reuse_earlier(src, dest)):
                record = self._fetch(src, dest)
        except Exception as exc:  # noqa: BLE001 - filtered: only expected failures cost the source alone
            if (full := no_space(exc, dest)) is not None:  # the machine's disk, not the source: the build stops
                raise full from exc
            if not is_source_failure(exc):
                raise
            # the source fails alone: recorded for this build only (tasks.base), every other source goes on
            self.set_status_message(f"fetching {src.name} failed: {exc}")
            self.mark_partial()
            atomic.write_json(self.output().path, stamped(failure_record(src, dest, exc), src))
            return
        if cache_url:
            self.set_status_message(f"saving {src.name} to the raw cache {raw_cache_url(cache_url, src)}")
            upload_raw(src, dest, record, cache_url, endpoint_url=endpoint, progress=self._percent)
        self.set_progress_percentage(100)
        atomic.write_json(self.output().path, stamped(record, src))

    def _reuse_earlier(self, src, dest: Path) -> dict:
        """Start a new raw folder of a downloaded source from the files of an earlier one of the same content
        (its licence, attribution or regions corrected: :mod:`pipeline.sources.rawreuse`): nothing is downloaded
        again.  Without one made by the same fetch code, the downloads of one made by other code are offered
        to the fetch file by file (returned for :func:`pipeline.sources.rawreuse.reusing`)."""
        from pipeline.sources.rawreuse import DOWNLOADED, earlier_downloads, newest_raws, seed_raw

        if src.scheme not in DOWNLOADED or dest.exists():
            return {}
        here = raw_dir(self.source_name, self.raw)
        earlier, other = newest_raws(here.parent, self.source_name, here, made_by(src))
        if earlier is None:
            offered = earlier_downloads(other) if other is not None else {}
            if other is not None and offered:
                self.set_status_message(f"offering the {len(offered)} downloads of {other.parent.name} (other "
                                        "fetch code) to the fetch: each is checked, not downloaded again")
            return offered
        try:
            linked = seed_raw(dest, earlier)
        except OSError as exc:  # another file system: fetched from nothing
            self.set_status_message(f"cannot reuse {earlier.parent.name} ({exc}): fetching {src.name} again")
            return {}
        self.set_status_message(f"reusing {linked} files of {earlier.parent.name} (the same content)")
        return {}

    def _percent(self, done: int, total: int | None) -> None:
        """Files of a raw-cache restore or upload."""
        if total:
            self.set_progress_percentage(int(100 * done / total))

    def _progress(self, done: int, total: int | None) -> None:
        """Bytes of the file being transferred (``download``'s callback): to the console and luigid."""
        import time

        from pipeline.progress import Transfer
        from tasks.progress import report_transfer

        transfer = self.__dict__.setdefault("_transfer", Transfer(time.monotonic()))
        transfer.update(done, total)
        report_transfer(self, transfer)

    def _fetch(self, src, dest: Path) -> dict:
        self.set_status_message(f"fetching {src.name} ({src.kind}) from {src.location or 'built-in demo'}")
        if src.kind == "demo":
            from pipeline.sources.adapters.demo import fetch_demo

            record = fetch_demo(src, dest)
        else:
            from pipeline.sources.fetch import fetch_source

            # a STAC fetch reports items done / found, not bytes: its percentage only
            progress = self._percent if src.kind == "stac" else self._progress
            hashes = _read_hashes(src.name) if src.scheme == "file" else None
            record = fetch_source(src, dest, progress=progress, limits=limits(), hashes=hashes)
            if hashes is not None:
                atomic.write_json(local_hashes_path(src.name), hashes)
            record.setdefault("root", str(dest))
            if "_transfer" in self.__dict__:
                from tasks.progress import report_transfer

                report_transfer(self, self.__dict__["_transfer"], force=True)  # the last figures, not running
        return record


class CatalogSource(CatalogParams, PipelineTask):
    """List the scenes of a fetched source (``data/catalog/<source>-<catalog>.json``) with the kind's adapter."""

    def requires(self):
        return self.clone(FetchSource)

    def output(self):
        return luigi.LocalTarget(str(catalog_path(self.source_name, self.catalog)))

    def run(self):
        from pipeline.sources.adapters import get_adapter
        from pipeline.sources.options import selection

        src = verified_source(cfg().sources_file, self.source_name, self.raw, self.catalog)
        fetched = json.loads(Path(self.input().path).read_text())
        root = Path(fetched["root"])
        failed = failure_of(fetched)
        if failed is not None:  # the fetch failed as a whole: no scenes; AssembleTiles / BuildRelease decide
            atomic.write_json(self.output().path, {"source": src.name, "kind": src.kind, "root": str(root),
                                                   "scenes": [], "rejects": [], "failed": failed})
            return
        self.set_status_message(f"listing scenes of {src.name} under {root}")
        adapter = get_adapter(src.kind)
        rejected: list[PipelineInputError] = []
        try:
            scenes = adapter.scenes(root, src, rejected=rejected, limits=limits())
        except PipelineInputError as exc:
            # the whole source is unusable (e.g. wrong layout): no scenes, one reject row
            scenes = []
            rejected.append(exc)
        scenes = self._mosaics(src, scenes, root)
        rejects = [
            {"source": src.name, "scene_id": getattr(exc, "scene_id", ""), "file": exc.file,
             "stage": getattr(exc, "reject_stage", "catalog"), "reason": exc.reason}
            for exc in rejected
        ] + [  # items the fetch left out on their own (e.g. an OpenAerialMap image that failed)
            {"source": src.name, "scene_id": r.get("scene_id", ""), "file": r["path"], "stage": r.get("stage", "fetch"),
             "reason": r["reason"]}
            for r in self._fetch_rejects(fetched, root)
        ]
        self.set_progress_percentage(100)
        chosen = selection(src.options)  # what it kept scenes by (options.licences), for `python -m pipeline plan`
        atomic.write_json(self.output().path, {
            "source": src.name, "kind": src.kind, "root": str(root),
            "scenes": sorted((s.to_dict() for s in scenes), key=lambda d: d["scene_id"]),
            "rejects": rejects, **({"select": chosen} if chosen else {}),
        })

    def _mosaics(self, src, scenes: list, root: Path) -> list:
        """The scenes with their chips joined into mosaics when the source wants it (:mod:`pipeline.sources.mosaic`,
        the chips' headers read in forked children)."""
        from pipeline.sources.mosaic import mosaic_contained, mosaic_wanted

        if not scenes or not mosaic_wanted(src.kind, src.options):
            return scenes
        self.set_status_message(f"joining the chips of {src.name} that lie side by side")
        return mosaic_contained(scenes, str(root))

    @staticmethod
    def _fetch_rejects(fetched: dict, root: Path) -> list[dict]:
        """The fetch record's ``rejects`` that no adapter reports: a STAC source's rejected items are in its
        ``stac-index.json`` too, and come back from the adapter as ``ItemRejected`` (with scene id and stage)."""
        from pipeline.sources.adapters.stac import has_index

        return [] if has_index(root) else [r for r in fetched.get("rejects", []) if "path" in r]
