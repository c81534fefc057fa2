"""Checks 1-2 and the run of every checker: :func:`validate_release`, :func:`validate_report` and the
``validate`` command line (``python -m pipeline validate <release-dir> [--json]``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline import forked
from pipeline.dataset.splits.leakage import groups_from_pairs, overlapping_pairs
from pipeline.gcpause import collector_paused
from pipeline.release.manifest import SCHEMA_VERSION, schema_problems
from pipeline.release.validate.audit import check_split_audit
from pipeline.release.validate.changes import check_changes, released_before
from pipeline.release.validate.common import MANIFEST
from pipeline.release.validate.consistency import check_consistency
from pipeline.release.validate.files import check_files_entries, check_stray_files
from pipeline.release.validate.incremental import Trust, file_key
from pipeline.release.validate.outputs import check_user_outputs
from pipeline.release.validate.rasters import check_record_files
from pipeline.release.validate.split_files import check_split_files
from pipeline.release.validate.uda import check_uda_files
from pipeline.release.validate.zones import check_zone_files


def validate_report(release_dir: str | Path, *, trust: Trust | None = None,
                    manifest: Any = None, concurrent: bool = False) -> dict[str, Any]:
    """Validate a release folder; ``{"valid", "problems", "warnings", "images", "release", "release_dir"}``.

    ``images`` is the number of image records in the manifest (0 when it cannot be read) and
    ``release`` the manifest's ``release`` (None when unknown).  ``warnings`` are named findings that do not
    make the release invalid (:mod:`pipeline.release.validate.audit`: problems the frozen history of earlier
    releases makes unfixable, regions that are one leakage group).
    ``trust`` (the build's incremental check, :mod:`pipeline.release.validate.incremental`) names the image
    records and STAC items whose byte-level checks a validated previous release already made; without it (the
    ``validate`` command) everything is checked.
    ``manifest``: the JSON value the caller parsed from the folder's ``manifest.json`` (a build that goes on to
    use it, so the file is read once); default: read here.  No check changes it.
    ``concurrent``: the outputs for users (check 11: COG tiles, STAC catalog, index) are checked in a forked
    process (:mod:`pipeline.forked`) while this one makes the schema and release-wide checks, and check 11
    checks the COG tiles in another and half of the STAC items in a third (from 64 to check on: a 5,000-image
    release 52 -> 36 s on two cores); the problems are the same, in the same order.  The build and the
    ``validate`` command ask for it; the default suits any caller (a threaded program should not fork).
    """
    root = Path(release_dir)
    out: list[str] = []
    warnings: list[str] = []
    report: dict[str, Any] = {"valid": False, "problems": out, "warnings": warnings, "images": 0, "release": None,
                              "release_dir": str(root)}
    mpath = root / MANIFEST
    if not mpath.is_file():
        out.append(f"{MANIFEST}: missing")
        return report
    try:
        manifest = parse_manifest(mpath.read_bytes()) if manifest is None else manifest
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        out.append(f"{MANIFEST}: not valid JSON ({exc})")
        return report
    if not isinstance(manifest, dict):
        out.append(f"{MANIFEST}: not a JSON object")
        return report
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        shown = "missing" if version is None else f"{version!r} is not supported"
        out.append(f"{MANIFEST}: schema_version {shown} (expected {SCHEMA_VERSION})")
        return report
    report["release"] = manifest.get("release") if isinstance(manifest.get("release"), str) else None
    trust = trust or Trust()
    images = manifest.get("images")
    skip = [i for i, r in enumerate(images) if isinstance(r, dict) and r.get("id") in trust.records] \
        if isinstance(images, list) else []
    files = manifest.get("files")
    skip_files = {i for i, e in enumerate(files) if file_key(e) in trust.file_entries} \
        if isinstance(files, list) and trust.file_entries else set()
    records = [r for r in images if isinstance(r, dict)] if isinstance(images, list) else []
    report["images"] = len(images) if isinstance(images, list) else 0
    outputs = (forked.start if concurrent else forked.done)(_user_outputs, root, manifest, records, trust,
                                                             concurrent)
    with outputs:  # check 11 runs from here on, beside the schema check (5,000 images: 5.6 s) and checks 1-10
        out.extend(f"{MANIFEST}: schema: {line}"
                   for line in schema_problems(manifest, skip_images=set(skip), skip_files=skip_files))
        _release_wide(root, manifest, records, trust, files, out, warnings)
        out.extend(outputs.result())
    report["valid"] = not out
    return report


def parse_manifest(data: bytes) -> Any:
    """The JSON value of a manifest file's bytes: by orjson (~2x the standard library's speed on a 5,000-image
    manifest; it reads no ``NaN`` or ``Infinity`` either), else by ``json`` (its messages for text that is not
    JSON; huge integers), which refuses those constants too (:func:`_not_json`).  Raises ``ValueError``
    (``UnicodeDecodeError`` for bytes that are not UTF-8)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8"), parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity``, which Python's ``json`` reads but JSON has not (RFC 8259): no
    number of a manifest may be one (a footprint of such bounds could not be compared)."""
    raise ValueError(f"{constant} is not a JSON number")


def _user_outputs(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], trust: Trust,
                  concurrent: bool = False) -> list[str]:
    """Check 11's problem lines (:func:`check_user_outputs`)."""
    out: list[str] = []
    check_user_outputs(root, manifest, records, out, trust=trust, concurrent=concurrent)
    return out


def _release_wide(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], trust: Trust, files: Any,
                  out: list[str], warnings: list[str]) -> None:
    """Checks 1-10 after the schema: consistency, files, splits, audit, UDA, zones, changes."""
    pairs = _overlaps(records)
    groups = groups_from_pairs((r["id"] for r in records), pairs) if pairs is not None else None
    check_consistency(manifest, records, out, groups=groups)
    for rec in records:
        if rec.get("id") not in trust.records:
            check_record_files(root, rec, out)
    check_stray_files(root, manifest, records, out)
    check_files_entries(root, manifest, out, trusted={
        e["path"] for e in files if isinstance(e, dict) and e.get("path") in trust.same_bytes
        and file_key(e) in trust.file_entries} if isinstance(files, list) else ())
    check_split_files(root, records, out)
    check_split_audit(manifest, records, out, warnings, held=released_before(root, manifest, records),
                      pairs=pairs)
    check_uda_files(root, manifest, records, out)
    check_zone_files(root, manifest, records, out)
    check_changes(root, manifest, records, out)


def _overlaps(records: list[dict[str, Any]]) -> list[tuple[str, str, float]] | None:
    """The overlapping footprint pairs of all ``records``, computed once for the summary and the split audit;
    None when a record has no string id or the footprints cannot be compared (each check then says so)."""
    if not all(isinstance(r.get("id"), str) for r in records):
        return None
    try:
        return overlapping_pairs(records)
    except Exception:  # noqa: BLE001  (a malformed CRS or bounds, reported by the checks themselves)
        return None


def validate_release(release_dir: Path, *, trust: Trust | None = None, manifest: Any = None,
                     concurrent: bool = False) -> list[str]:
    """Problem lines of the release in ``release_dir`` (module docstring); ``[]`` means valid (``trust``,
    ``manifest`` and ``concurrent``: see :func:`validate_report`)."""
    return validate_report(release_dir, trust=trust, manifest=manifest, concurrent=concurrent)["problems"]


# --- command line ---------------------------------------------------------------------------------

#: The first line of the package docstring, for ``--help``.
DESCRIPTION = "Check a built release folder against its ``manifest.json``: ``python -m pipeline validate <dir>``."

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``validate`` sub-command."""
    parser.add_argument("release_dir", metavar="release-dir", type=Path,
                        help="release folder holding manifest.json (or that manifest.json)")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead of problem lines")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command: 0 valid, 1 problems found, 2 when the release folder does not exist.

    Problem lines go to stdout, one per line, then ``warning: <line>`` for each warning, then a summary to
    stderr; with ``--json`` a report ``{"valid", "problems", "warnings", "images", "release", "release_dir"}``
    goes to stdout.  A valid release prints ``valid: <dir> (<n> images)`` (``, <k> warnings`` when there are
    any); warnings alone never change the exit code.
    """
    root: Path = args.release_dir
    if root.name == "manifest.json" and root.is_file():  # the manifest named instead of its folder
        root = root.parent
    if not root.is_dir():
        print(f"{root}: not a directory", file=sys.stderr)
        return 2
    with collector_paused():  # records of every image: pipeline.gcpause
        report = validate_report(root, concurrent=True)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        for line in report["problems"]:
            print(line)
        for line in report["warnings"]:
            print(f"warning: {line}")
        if report["valid"]:
            more = f", {_count(len(report['warnings']), 'warning')}" if report["warnings"] else ""
            print(f"valid: {root} ({report['images']} images{more})")
        else:
            print(f"invalid: {root} ({_count(len(report['problems']), 'problem')})", file=sys.stderr)
    return 0 if report["valid"] else 1


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def main(argv: list[str] | None = None) -> int:
    """``validate <release-dir> [--json]`` as a stand-alone command (usage errors return 2)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline validate", description=DESCRIPTION)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run(args)
