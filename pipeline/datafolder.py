"""Where a data folder is, and moving one (``python -m pipeline relocate DATA``).

The work records a build keeps (``work/``, ``catalog/``, ``raw/<source>-<digest>/fetch.json``) name files by
absolute path: a scene's tiles, the tile cache's entries, the release a split continues.  A data folder moved
or copied elsewhere therefore still pointed at the old place: the next release failed half-way with "No such
file" (or, beside a copy, quietly read the old folder's files).  So the folder remembers where it is
(``work/location``, written by every build) and a build refuses a folder that was moved, naming both places
(:func:`location_problem`); :func:`relocate` rewrites the recorded paths to the new place, after which the build
reuses every result as before.  Releases hold no absolute path and are never rewritten.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pipeline import atomic
from pipeline.errors import ConfigError

#: The file under the data folder that says where the folder was when it was last built in.
MARKER = Path("work") / "location"


def where(data: str | Path) -> str:
    """``data`` as the absolute path records name it by (not resolving symbolic links)."""
    return os.path.abspath(data)


def recorded_location(data: str | Path) -> str | None:
    """Where the data folder ``data`` was when it was last built in (None: never, or before this was kept)."""
    try:
        return (Path(data) / MARKER).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def location_problem(data: str | Path) -> str | None:
    """Why a build cannot use ``data`` as it is (it was built in at another place), or None."""
    before = recorded_location(data)
    if before is None or _same_folder(before, data):
        return None
    return (f"data folder {where(data)} was built in at {before}: its work records name files there; run "
            f"'python -m pipeline relocate {where(data)}' to make them name the files here (nothing is "
            "recomputed), or build in the old place")


def _same_folder(recorded: str, data: str | Path) -> bool:
    """Whether the path ``recorded`` still leads to the folder ``data`` (the same path, or another path to it
    through a symbolic link or mount: the records' paths still lead to its files)."""
    if recorded == where(data):
        return True
    try:
        return os.path.samefile(recorded, data)
    except OSError:
        return False


def remember_location(data: str | Path) -> None:
    """Record where ``data`` is (a build calls this before its tasks write anything); a recorded path that
    still leads to it is kept."""
    before = recorded_location(data)
    if before is None or not _same_folder(before, data):
        atomic.write_bytes(Path(data) / MARKER, (where(data) + "\n").encode())


def record_files(data: Path) -> list[Path]:
    """The JSON records of a data folder that may name its files: under ``work/`` and ``catalog/``, and each
    fetch record (a raw folder's ``files/`` are a source's own data, never touched)."""
    found = [p for top in ("work", "catalog") for p in sorted((data / top).rglob("*.json")) if p.is_file()]
    return found + sorted(p for p in (data / "raw").glob("*/fetch.json") if p.is_file())


def relocate(data: str | Path) -> dict:
    """Make the records of the data folder ``data`` name its files where it is now: every recorded path under
    the old place (:func:`recorded_location`) becomes the same path under the new one.  Returns what was done
    (``from``, ``to``, ``files`` rewritten, ``records`` read)."""
    folder = Path(data)
    before, now = recorded_location(folder), where(folder)
    done: dict = {"from": before, "to": now, "files": 0, "records": 0}
    if before is None or _same_folder(before, folder):
        return done
    if now.startswith(before.rstrip("/") + "/"):  # a rewritten path would match again if this were rerun
        raise ConfigError(f"data folder {now} lies inside the place it was built in ({before}): move it elsewhere")
    # a path where it starts a JSON string, or a part of one after a NUL (the tile cache's "<kind>\0<path>" keys):
    # "/data/...", never the same letters inside another path ("/mnt/data/..." of a source folder)
    old = re.compile(rb'(?:(?<=")|(?<=\\u0000))' + re.escape(json.dumps(before.rstrip("/") + "/")[1:-1].encode()))
    new = json.dumps(now.rstrip("/") + "/")[1:-1].encode()
    for path in record_files(folder):
        text = path.read_bytes()
        done["records"] += 1
        fixed = old.sub(lambda _: new, text)
        if fixed != text:
            atomic.write_bytes(path, fixed)
            done["files"] += 1
    remember_location(folder)
    return done


def add_arguments(parser) -> None:
    parser.add_argument("data", help="the data folder, where it is now")


def run(args) -> int:
    folder = Path(args.data)
    if not (folder / "work").is_dir():
        print(f"{folder}: not a data folder (no work/ in it)")
        return 1
    done = relocate(folder)
    if not done["records"]:
        print(f"{done['to']}: nothing to do (built in here)")
    else:
        print(f"{done['to']}: {done['files']} of {done['records']} records named files under {done['from']}; "
              "they name them here now")
    return 0
