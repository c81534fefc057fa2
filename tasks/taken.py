"""A release name is built once: a build asked for a release that exists, made from other settings, refuses.

``data/releases/<release>/`` is named by the release alone and never rebuilt in place, so ``BuildRelease`` is
complete as soon as that folder's manifest exists.  Without this check, a build with another seed, another tile
size, a source added to ``sources.yaml``, new completed annotations or after a code or library upgrade ran
nothing and reported the release (``1 already done``, ``Release v0.1.0: 154 images``) as if it had been made
from what was asked: the user's change was silently not built.

The manifest records the root's significant parameters (``created_with.build_parameters``, as Luigi's strings:
exactly what the task id is a digest of); a root created to build (:class:`tasks.params.RootRegister`, for
``BuildRelease``: the ``luigi`` command, ``python -m tasks.worker``, ``plan``, ``prune``) whose parameters
differ is refused before anything runs, naming each difference (:func:`differences`).  A release written
before the parameters were recorded is not checked.  ``PublishRelease`` publishes the folder as it is.
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
    """The build parameters recorded in ``folder``'s manifest, or None (no manifest, one that cannot be read, or
    one written before they were recorded)."""
    try:
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    made = manifest.get("created_with") if isinstance(manifest, dict) else None
    params = made.get("build_parameters") if isinstance(made, dict) else None
    if not isinstance(params, dict):
        return None
    return {str(k): str(v) for k, v in params.items()}


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _sources(before: str | None, now: str | None) -> list[str]:
    """``sources`` (``[[name, raw digest, catalog digest], ...]``) compared by name."""
    old = {str(s[0]): s for s in _json(before) or [] if isinstance(s, list) and s}
    new = {str(s[0]): s for s in _json(now) or [] if isinstance(s, list) and s}
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
    stages = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if recorded.get("code_release") != current.get("code_release"):
        stages.append("release")
    return [f"the code or library versions of the {', '.join(stages) or 'pipeline'} stage"
            + ("s" if len(stages) > 1 else "")] if stages else []


#: What a build may do instead when only the browser was left out.
_VIEWER_HINT = " (python -m pipeline browse <release folder> adds the browser to a release without one)"


def differences(recorded: dict[str, str], current: dict[str, str], now: str = "now") -> list[str]:
    """What differs between the parameters a release was built with (or another worker builds it with:
    ``tasks.worker.rival_builds``) and those of this build, in words; ``now`` introduces this build's values."""
    out = [f"{k} {recorded[k]} ({now} {current[k]})" for k in _SCALARS
           if k in recorded and k in current and recorded[k] != current[k]]
    if recorded.get("sources") != current.get("sources"):
        out += _sources(recorded.get("sources"), current.get("sources"))
    out += _codes(recorded, current)
    if recorded.get("annotation_index") != current.get("annotation_index"):
        out.append("the completed annotations")
    if recorded.get("previous") != current.get("previous"):
        out.append(f"the previous release {recorded.get('previous') or 'none'} "
                   f"({now} {current.get('previous') or 'none'})")
    elif recorded.get("previous_digest") != current.get("previous_digest"):
        out.append(f"the manifest of the previous release {current.get('previous') or 'none'}")
    named = {*_SCALARS, "sources", "codes", "code_release", "annotation_index", "previous", "previous_digest"}
    out += [k for k in sorted((set(recorded) | set(current)) - named) if recorded.get(k) != current.get(k)]
    return out


def taken_problem(release: str, folder: Path, current: dict[str, str]) -> str | None:
    """Why release ``release`` (folder ``folder``) cannot be built with the parameters ``current`` (the root's
    significant parameters as strings), or None: it does not exist, was built with them, or records none."""
    recorded = recorded_parameters(folder)
    if recorded is None or recorded == current:
        return None
    changed = differences(recorded, current) or ["its parameters"]
    if recorded.get("viewer") == "False" and current.get("viewer") == "True":
        changed = [c + _VIEWER_HINT if c.startswith("viewer ") else c for c in changed]
    return (f"release {release} exists ({folder}) and was built with other settings: {'; '.join(changed)}. "
            f"A release is never rebuilt in place, so this build would change nothing: build it as another "
            f"release (--PipelineConfig-release <new name>), or move {folder} away first")
