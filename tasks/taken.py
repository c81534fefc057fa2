"""A release name is built once: a build asked for a release that exists, made from other settings, refuses.

``data/releases/<release>/`` is named by the release alone and never rebuilt in place, so ``BuildRelease`` is
complete as soon as that folder's manifest exists.  Without this check, a build with another seed, another tile
size, a source added to ``sources.yaml``, new completed annotations or after a code or library upgrade ran
nothing and reported the release (``1 already done``, ``Release v0.1.0: 154 images``) as if it had been made
from what was asked: the user's change was silently not built.

The manifest records the root's significant parameters (``created_with.build_parameters``, as Luigi's strings:
exactly what the task id is a digest of); a root created to build (:class:`tasks.params.RootRegister`, for
``BuildRelease``: the ``luigi`` command, ``python -m tasks.worker``, ``plan``, ``prune``) whose parameters
differ is refused before anything runs, naming each difference (:func:`differences`).  For a release written
before the parameters were recorded, what its ``created_with`` says of them is compared (settings, sources, code
versions).  ``PublishRelease`` publishes the folder as it is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

#: Parameters shown as ``name <recorded> (now <current>)``.
_SCALARS = ("seed", "tile_size", "target_gsds", "max_nodata_fraction", "max_grid_pixels", "split_trials",
            "region_min", "region_max", "label_every", "selection_epochs", "random_fraction", "viewer")


def recorded_parameters(folder: Path) -> dict[str, str] | None:
    """The build parameters recorded in ``folder``'s manifest (those of a manifest written before they were
    recorded: what its ``created_with`` says of them, :func:`_legacy`), or None (no manifest, or one that cannot
    be read)."""
    try:
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    made = manifest.get("created_with") if isinstance(manifest, dict) else None
    if not isinstance(made, dict):
        return None
    params = made.get("build_parameters")
    if isinstance(params, dict):
        return {str(k): str(v) for k, v in params.items()}
    return _legacy(made) or None


def _legacy(made: dict[str, Any]) -> dict[str, str]:
    """The parameters an older manifest's ``created_with`` records (settings, source digests, code versions;
    not the annotations or the previous release), serialized as Luigi serializes them."""
    def section(key: str) -> dict[str, Any]:
        value = made.get(key)
        return value if isinstance(value, dict) else {}

    split, sel, codes, digests = (section(k) for k in ("split", "selection", "code_versions", "source_digests"))
    values = {
        "seed": made.get("seed"), "tile_size": made.get("tile_size"), "target_gsds": made.get("target_gsds"),
        "max_nodata_fraction": made.get("max_nodata_fraction"), "max_grid_pixels": made.get("max_grid_pixels"),
        "split_trials": split.get("trials"), "region_min": sel.get("n_min"), "region_max": sel.get("n_max"),
        "label_every": sel.get("k"), "selection_epochs": sel.get("epochs"),
        "random_fraction": sel.get("random_fraction"),
        "sources": [[n, d.get("raw"), d.get("catalog")] for n, d in digests.items() if isinstance(d, dict)] or None,
        "codes": {k: v for k, v in codes.items() if k != "release"} or None, "code_release": codes.get("release"),
    }
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in values.items() if v is not None}


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _by_name(text: str | None) -> dict[str, list]:
    """``sources`` (``[[name, raw digest, catalog digest], ...]``) by name."""
    return {str(s[0]): s for s in _json(text) or [] if isinstance(s, list) and s}


def _same(key: str, a: str | None, b: str | None) -> bool:
    """Whether two serialized values of parameter ``key`` mean the same (numbers, lists and mappings compared
    as values: an older manifest's are re-serialized, and the sources' order does not matter)."""
    if a == b:
        return True
    if key == "sources":
        return _by_name(a) == _by_name(b)
    va, vb = _json(a), _json(b)
    return va is not None and va == vb


def _sources(before: str | None, now: str | None) -> list[str]:
    """``sources`` compared by name."""
    old, new = _by_name(before), _by_name(now)
    out = [f"source '{n}' added" for n in sorted(set(new) - set(old))]
    out += [f"source '{n}' left out" for n in sorted(set(old) - set(new))]
    out += [f"source '{n}' changed (its sources.yaml entry, its files, the limits on input or the fetch and "
            "catalog code)" for n in sorted(set(old) & set(new)) if old[n] != new[n]]
    return out or ["the sources"]


def _codes(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    old = _json(recorded.get("codes")) or {}
    new = _json(current.get("codes")) or {}
    if not isinstance(old, dict) or not isinstance(new, dict):
        old, new = {}, {}
    stages = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) if "codes" in recorded else []
    if "code_release" in recorded and recorded.get("code_release") != current.get("code_release"):
        stages.append("release")
    return [f"the code or library versions of the {', '.join(stages) or 'pipeline'} stage"
            + ("s" if len(stages) > 1 else "")] if stages else []


#: What a build may do instead when only the browser was left out.
_VIEWER_HINT = " (python -m pipeline browse <release folder> adds the browser to a release without one)"


def differences(recorded: dict[str, str], current: dict[str, str], now: str = "now") -> list[str]:
    """What differs between the parameters a release was built with (or another worker builds it with:
    ``tasks.worker.rival_builds``) and those of this build, in words; ``now`` introduces this build's values.
    Only parameters ``recorded`` holds are compared (one added to the code since changes the code versions)."""
    def differ(k: str) -> bool:
        return k in recorded and not _same(k, recorded[k], current.get(k))

    out = [f"{k} {recorded[k]} ({now} {current.get(k)})" for k in _SCALARS if differ(k)]
    if differ("sources"):
        out += _sources(recorded.get("sources"), current.get("sources"))
    out += _codes(recorded, current)
    if differ("annotation_index"):
        out.append("the completed annotations")
    if differ("previous"):
        out.append(f"the previous release {recorded.get('previous') or 'none'} "
                   f"({now} {current.get('previous') or 'none'})")
    elif differ("previous_digest"):
        out.append(f"the manifest of the previous release {current.get('previous') or 'none'}")
    named = {*_SCALARS, "sources", "codes", "code_release", "annotation_index", "previous", "previous_digest"}
    out += [k for k in sorted(set(recorded) - named) if differ(k)]
    return out


def taken_problem(release: str, folder: Path, current: dict[str, str]) -> str | None:
    """Why release ``release`` (folder ``folder``) cannot be built with the parameters ``current`` (the root's
    significant parameters as strings), or None: it does not exist or was built with them."""
    recorded = recorded_parameters(folder)
    if recorded is None:
        return None
    changed = differences(recorded, current)
    return taken_message(release, folder, recorded, changed) if changed else None


def taken_message(release: str, folder: Path, recorded: dict[str, str], changed: list[str]) -> str:
    """The refusal of :func:`taken_problem`: ``changed`` are the :func:`differences` (``recorded``: the release's)."""
    if recorded.get("viewer") == "False":
        changed = [c + _VIEWER_HINT if c.startswith("viewer False ") else c for c in changed]
    return (f"release {release} exists ({folder}) and was built with other settings: {'; '.join(changed)}. "
            f"A release is never rebuilt in place, so this build would change nothing: build it as another "
            f"release (--PipelineConfig-release <new name>), or move {folder} away first")
