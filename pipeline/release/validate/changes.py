"""Check 10: the changes report names this release, agrees with its split counts and moves no image."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.constants import SPLITS

CHANGES = "stats/changes.json"


def check_changes(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]], out: list[str]) -> None:
    path = root / CHANGES
    if not path.is_file():
        return
    try:
        changes = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        out.append(f"{CHANGES}: not valid JSON ({exc})")
        return
    if not isinstance(changes, dict):
        out.append(f"{CHANGES}: not a JSON object")
        return
    if changes.get("release") != manifest.get("release"):
        out.append(f"{CHANGES}: release is {changes.get('release')!r}, manifest says {manifest.get('release')!r}")
    if changes.get("previous_release") != manifest.get("previous_release"):
        out.append(f"{CHANGES}: previous_release is {changes.get('previous_release')!r}, manifest says "
                   f"{manifest.get('previous_release')!r}")
    current = (changes.get("splits") or {}).get("current") if isinstance(changes.get("splits"), dict) else None
    have = Counter(r.get("split") for r in records)
    if isinstance(current, dict) and {s: current.get(s) for s in SPLITS} != {s: have.get(s, 0) for s in SPLITS}:
        out.append(f"{CHANGES}: current split counts {current} differ from the manifest's images "
                   f"{ {s: have.get(s, 0) for s in SPLITS} }")
    moves = changes.get("split_moves")
    if isinstance(moves, list) and moves:
        ids = ", ".join(str(m.get("id")) for m in moves[:5] if isinstance(m, dict)) + (" ..." if len(moves) > 5 else "")
        out.append(f"{CHANGES}: {len(moves)} released image{'s' if len(moves) != 1 else ''} moved to another split "
                   f"since {changes.get('previous_release')} ({ids})")


def released_before(root: Path, manifest: dict[str, Any], records: list[dict[str, Any]]) -> set[str]:
    """Ids of the images released before in the lineage (they keep their split): every image that the changes
    report does not list as *added*, or lists as back from an earlier release (``returned_from``) or on the place
    of a retired image (``same_place_as``: its split is the retired image's); empty without a previous release or
    a readable report."""
    if not manifest.get("previous_release"):
        return set()
    try:
        changes = json.loads((root / CHANGES).read_text(encoding="utf-8"))
        added = {a.get("id") for a in changes["added"]
                 if isinstance(a, dict) and not a.get("returned_from") and not a.get("same_place_as")}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return set()
    return {r["id"] for r in records if isinstance(r.get("id"), str) and r["id"] not in added}
