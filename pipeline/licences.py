"""The licences of a release's images: SPDX-like ids, the dataset-hub ids, which images a source's
``options.licences`` keeps, and what each licence asks of users.

Every image keeps the licence of its source (``sources.yaml``'s ``license``, the manifest's ``images[].license``);
a release that mixes sources is a collection of separately licensed images, not one work under one licence.
:func:`licence_terms` names the conditions a licence text states (attribution, non-commercial, share-alike, no
derivatives, public domain, ODbL), so the release card (:mod:`pipeline.release.card`) can say what each group of
images allows; a text it does not recognise is said to be so, never guessed.
"""
from __future__ import annotations

import re

_SPDX = re.compile(r"^[\w\-.+]+$")
#: Common licence spellings in ``sources.yaml`` -> SPDX ids.
_LICENSE_ALIASES = {
    "cc0": "CC0-1.0", "cc0 1.0": "CC0-1.0", "cc by 4.0": "CC-BY-4.0", "cc-by 4.0": "CC-BY-4.0",
    "cc by-sa 4.0": "CC-BY-SA-4.0", "cc by-nc 4.0": "CC-BY-NC-4.0", "cc by-nc-sa 4.0": "CC-BY-NC-SA-4.0",
    "cc by-nd 4.0": "CC-BY-ND-4.0", "public domain": "other", "odbl": "ODbL-1.0", "mit": "MIT",
}
#: Licence ids the Hugging Face Hub knows (its dataset card's ``license``), by lower-cased SPDX id.
HUB_LICENSES = frozenset({
    "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-4.0",
    "cc-by-3.0", "cc-by-sa-3.0", "cc-by-nc-3.0", "cc-by-nc-sa-3.0", "cc-by-2.0", "odbl", "odc-by", "pddl", "mit",
    "apache-2.0",
})


def spdx_license(text: str | None) -> str:
    """An SPDX-like licence id for STAC's ``license`` field: ``"CC0-1.0 (synthetic)"`` -> ``CC0-1.0``,
    ``"CC BY-NC-SA 4.0"`` -> ``CC-BY-NC-SA-4.0``; anything else -> ``other``."""
    if not text:
        return "other"
    base = re.sub(r"\s*\(.*?\)\s*", " ", str(text)).strip()
    alias = _LICENSE_ALIASES.get(base.lower())
    if alias:
        return alias
    if _SPDX.match(base):
        return base
    dashed = re.sub(r"\s+", "-", base)
    if re.match(r"^CC[- ]BY", base, re.I) and _SPDX.match(dashed):
        return dashed.upper()
    return "other"


def licence_key(text: str | None) -> str:
    """What two licence texts are compared by: the SPDX id when the text is one this module knows
    (``CC BY 4.0``, ``CC-BY 4.0`` and ``CC-BY-4.0`` are the same licence), else the text itself, trimmed and
    lower-cased (``Inria Aerial Image Labeling terms``)."""
    spdx = spdx_license(text)
    return spdx.lower() if spdx != "other" else " ".join(str(text or "").split()).lower()


def licence_refused(licence: str | None, allowed: list[str] | None) -> str | None:
    """Why an image under ``licence`` is left out by a source's ``options.licences`` (``allowed``; None or
    empty: every licence is kept), or None when it is kept."""
    if not allowed or licence_key(licence) in {licence_key(a) for a in allowed}:
        return None
    return f"licence {licence or '(none stated)'!r} is not one of options.licences ({', '.join(allowed)})"


def hub_license(texts: set[str]) -> str:
    """The dataset card's ``license`` for images under the licence texts ``texts``: the hub's id of their one
    licence (``CC BY-NC-SA 4.0`` -> ``cc-by-nc-sa-4.0``, ``ODbL-1.0`` -> ``odbl``), else ``other`` (several
    licences, or one the hub does not know)."""
    ids = {spdx_license(t).lower() for t in texts}
    if len(ids) != 1:
        return "other"
    one = ids.pop()
    one = "odbl" if one == "odbl-1.0" else one
    return one if one in HUB_LICENSES else "other"


def licence_terms(text: str | None) -> list[str]:
    """What the licence ``text`` asks of whoever uses or shares the images, one short clause per condition, from
    the conditions its SPDX id or text names; one clause saying it is not recognised otherwise."""
    spdx = spdx_license(text)
    words = str(text or "").lower()
    if spdx.startswith("CC0") or "public domain" in words or spdx.upper() == "PDDL":
        return ["no conditions (public domain dedication)"]
    if spdx.upper().startswith("ODBL"):
        return ["credit the source (its attribution under Sources)", "share adapted databases under the ODbL",
                "keep the data open (no technical restrictions on copies)"]
    parts = spdx.upper().split("-")
    if spdx.upper().startswith("CC-BY"):
        terms = ["credit the source (its attribution under Sources)"]
        if "NC" in parts:
            terms.append("non-commercial use only")
        if "SA" in parts:
            terms.append("share adaptations of these images under the same licence")
        if "ND" in parts:
            terms.append("no derivatives: the release's tiles are reprojected and resampled from the source, which "
                         "the licence may count as adapting it; check with the licensor before sharing them")
        return terms
    return ["a licence this tool does not recognise: read the source's terms before using or sharing the images"]
