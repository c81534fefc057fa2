"""Check 7: ``train.txt``, ``val.txt``, ``test.txt`` list exactly the manifest's images, each in its split."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.constants import SPLITS
from pipeline.dataset.ids import natural_key
from pipeline.release.manifest import SPLIT_FILES, file_name

_COUNT_WORDS = {2: "two", 3: "three"}


def check_split_files(root: Path, records: list[dict[str, Any]], out: list[str]) -> None:
    listed: dict[str, list[str]] = {}
    for s in SPLITS:
        fname = SPLIT_FILES[s]
        path = root / fname
        if not path.is_file():
            out.append(f"{fname}: missing")
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            out.append(f"{fname}: not UTF-8 text")
            continue
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        names = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                out.append(f"{fname}: line {no} is blank")
            elif line != line.strip():
                out.append(f"{fname}: line {no} {line!r} has surrounding whitespace")
            elif "/" in line or "\\" in line:
                out.append(f"{fname}: line {no} {line!r} is not a bare file name")
            else:
                names.append(line)
        for name, n in sorted(Counter(names).items(), key=lambda kv: natural_key(kv[0])):
            if n > 1:
                out.append(f"{fname}: {name} is listed {n} times")
        listed[s] = names

    by_name: dict[str, Any] = {}
    for r in records:
        if isinstance(r.get("image"), str):
            by_name.setdefault(file_name(r["image"]), r.get("split"))
    sets = {s: set(names) for s, names in listed.items()}
    for name in sorted(set().union(*sets.values()) if sets else set(), key=natural_key):
        where = [s for s in SPLITS if name in sets.get(s, ())]
        if name not in by_name:
            for s in where:
                out.append(f"{SPLIT_FILES[s]}: {name} is listed but is not an image of the manifest")
        elif len(where) > 1:
            files = ", ".join(SPLIT_FILES[s] for s in where)
            out.append(f"{files}: {name} is in {_COUNT_WORDS.get(len(where), len(where))} splits")
        elif by_name[name] != where[0]:
            out.append(f"{SPLIT_FILES[where[0]]}: {name} is listed but its manifest split is {by_name[name]!r}")
    for name in sorted(by_name, key=natural_key):
        split = by_name[name]
        if split in sets and not any(name in names for names in sets.values()):
            out.append(f"{SPLIT_FILES[split]}: {name} is not listed (its manifest split is {split!r})")
