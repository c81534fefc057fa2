"""Start a downloaded source's new raw folder from an earlier one of the same content (no Luigi here).

A source's raw folder is named by the digest of its whole ``sources.yaml`` entry (``tasks.plan``), what only
labels its images included (licence and attribution, which its fetch record states for every file; the region and
acquisition-range options: :data:`pipeline.sources.options.LABEL_OPTIONS`), and so is how its pixels are read
(``options.bands``: :data:`pipeline.sources.options.PIXEL_OPTIONS`). Changing them makes a new raw folder, and
fetching that from nothing would download the source again (tens of GB for xBD) for the same bytes. So a new raw
folder of a source fetched over the network (``http``, ``https``, ``s3`` locations)
starts as hard links of the files of the newest complete raw folder of the same source whose fetch record was
made from the same entry but those labels and options, by the same fetch code (its ``made_by``: ``content`` and
``fetch_code``).  The fetch then finds its files in place, as after an interrupted fetch (a download whose file
is there makes no request, an archive whose extraction marker matches is not extracted again; every fetch
writes through new files renamed into place, never into an existing one), and writes its record with the
entry as it is now.

When no earlier folder was made by the same fetch code (the code changed: every edit to the fetch stage or a
module it imports, a library upgrade would otherwise download tens of GB again), the downloads of the newest
complete one of the same content are offered to the new fetch file by file instead (:func:`earlier_downloads`,
:func:`reusing`): a download whose destination is missing but whose URL that folder fetched whole starts as a
hard link of that file (:func:`link_earlier`, called by ``download`` and ``download_key``), which is then checked
as any file already in place is, and against the sha256 its record gave it; so only what the new code asks for
is reused (never a file it would no longer fetch), and archives are extracted again by the new code.  STAC and
OpenAerialMap sources take no part (a file of theirs named by an asset's URL may be a window cut out of it).

Not linked: unfinished transfers (``*.part``) and atomic writes (``.tmp-*``).  No candidate: a raw folder whose
fetch failed (a failure record), one of another source (names with ``-`` are told apart by the 12-digit
digest), a local location (read in place, or an archive whose bytes may have changed under the same entry).
Where a hard link cannot be made (another file system), nothing is reused and the fetch starts from nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.sources.outcome import failure_of

_DIGEST = re.compile(r"[0-9a-f]{12}")
#: Location schemes whose fetch downloads (what a reused raw folder saves).
DOWNLOADED = ("http", "https", "s3")


#: Source kinds whose fetch record names each download by the URL it was fetched whole from.
NOT_VERBATIM = ("stac", "openaerialmap")
#: URL -> (earlier file, its sha256) offered to the fetch running now (:func:`reusing`).
_EARLIER: dict[str, tuple[Path, str]] = {}


def reusable_raw(raw_root: Path, source: str, current: Path, made_by: dict[str, str]) -> Path | None:
    """The ``files/`` folder of the newest raw folder under ``raw_root`` of ``source`` (not ``current``) whose
    complete fetch record's ``made_by`` has ``made_by``'s ``content`` and ``fetch_code``; None when there is none."""
    return newest_raws(raw_root, source, current, made_by)[0]


def newest_raws(raw_root: Path, source: str, current: Path, made_by: dict[str, str]) -> tuple[Path | None, Path | None]:
    """``(same code, same content)``: the ``files/`` folders of the newest complete raw folders of ``source`` under
    ``raw_root`` (not ``current``) whose record's ``made_by`` has ``made_by``'s ``content`` and ``fetch_code``
    (:func:`reusable_raw`), and its ``content`` only (:func:`earlier_downloads`), from one reading of the records."""
    code: tuple[int, Path] | None = None
    content: tuple[int, Path] | None = None
    for record_path in raw_root.glob("*/fetch.json"):
        folder = record_path.parent
        name = folder.name
        if folder == current or not name.startswith(f"{source}-") or not _DIGEST.fullmatch(name[len(source) + 1:]):
            continue
        try:
            record = json.loads(record_path.read_text())
            when = record_path.stat().st_mtime_ns
        except (OSError, ValueError):
            continue
        made = record.get("made_by") if isinstance(record, dict) else None
        if (not isinstance(made, dict) or failure_of(record) is not None or not (folder / "files").is_dir()
                or made.get("content") != made_by["content"]):
            continue
        if content is None or when > content[0]:
            content = when, folder / "files"
        if made.get("fetch_code") == made_by["fetch_code"] and (code is None or when > code[0]):
            code = when, folder / "files"
    return (code[1] if code else None), (content[1] if content else None)


def seed_raw(dest: Path, earlier: Path) -> int:
    """Fill the new folder ``dest`` with hard links of the files under ``earlier`` (module docstring); the number
    of files linked.  Made whole in a temporary folder renamed to ``dest``: nothing when it fails (OSError)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    linked = 0
    try:
        for root, dirs, files in os.walk(earlier):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".tmp-"))
            here = tmp / Path(root).relative_to(earlier)
            here.mkdir(parents=True, exist_ok=True)
            for name in sorted(files):
                path = Path(root) / name
                if name.endswith(".part") or name.startswith(".tmp-") or path.is_symlink() or not path.is_file():
                    continue
                os.link(path, here / name)
                linked += 1
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return linked


def earlier_downloads(files: Path) -> dict[str, tuple[Path, str]]:
    """URL -> (file, sha256) of every whole download the fetch record beside ``files`` lists (archives, and the
    files that are no archive's extracts) whose file is there at its recorded size; {} for a STAC or
    OpenAerialMap source, or a record that cannot be read."""
    try:
        record = json.loads((files.parent / "fetch.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("kind") in NOT_VERBATIM:
        return {}
    archives = [e for e in record.get("archives") or [] if isinstance(e, dict)]
    from_archives = {e.get("url") for e in archives}
    out: dict[str, tuple[Path, str]] = {}
    for e in archives + [f for f in record.get("files") or [] if isinstance(f, dict)
                         and f.get("url") not in from_archives]:
        url, rel, sha, size = e.get("url"), e.get("path"), e.get("sha256"), e.get("bytes")
        if not (isinstance(url, str) and url.split(":", 1)[0] in DOWNLOADED and isinstance(rel, str)
                and isinstance(sha, str) and isinstance(size, int)):
            continue
        path = files / rel
        try:
            if path.resolve().is_relative_to(files.resolve()) and path.is_file() and not path.is_symlink() \
                    and path.stat().st_size == size:
                out[url] = (path, sha)
        except OSError:
            continue
    return out


@contextlib.contextmanager
def reusing(earlier: dict[str, tuple[Path, str]]) -> Iterator[None]:
    """Offer ``earlier`` (:func:`earlier_downloads`) to the downloads made within (module docstring)."""
    before = dict(_EARLIER)
    _EARLIER.clear()
    _EARLIER.update(earlier)
    try:
        yield
    finally:
        _EARLIER.clear()
        _EARLIER.update(before)


def link_earlier(url: str, dest: Path) -> str | None:
    """Make ``dest`` (missing) a hard link of the earlier download of ``url`` offered by :func:`reusing`; the
    sha256 its record gave it, which the caller checks, or None (nothing offered, ``dest`` exists, no link)."""
    offered = _EARLIER.get(url)
    if offered is None or os.path.lexists(dest):
        return None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(offered[0], dest)
    except OSError:
        return None
    return offered[1]
