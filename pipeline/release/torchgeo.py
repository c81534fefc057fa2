"""A release in torchgeo, right by default: one dataset per UTM zone, sampled in proportion to its tiles.

Why: a single ``torchgeo.datasets.RasterDataset`` over all release tiles warps every tile into the CRS of the
first file it opens; tiles of other UTM zones then grow, rotate and gain artificial class-0 pixels, and random
geo-sampling over-samples them.  Within one zone (and one GSD) nothing is warped: a sample is exactly the
release pixels.

The release lists its tiles per zone: ``zones/<epsg>.txt``, one release-relative image path a line
(``austin/images/austin_1.tif``; the label is the same path with ``/labels/``), natural order, every split
(:func:`zone_lines`, written by :mod:`pipeline.release.writer`, listed in the manifest's ``zones`` section and
checked by ``validate``).

Recipe (``pip install -e '.[torchgeo]'``)::

    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from pipeline.release.torchgeo import ZoneSamples, zone_datasets

    datasets = zone_datasets("data/releases/v0.1.0", split="train")    # {(epsg, gsd): images & labels}
    samples = ZoneSamples(datasets, size=512, length=1000, seed=0)     # patches per zone ∝ its tiles
    loader = DataLoader(samples, batch_size=8, shuffle=True, collate_fn=stack_samples)

:func:`zone_datasets` builds, per (zone, GSD) group, ``RasterDataset(images) & RasterDataset(labels,
is_image=False)`` (an ``IntersectionDataset``: samples with ``image`` and ``mask``); :func:`sample_lengths`
splits the wanted number of samples between the groups in proportion to their tile counts (largest remainder);
:class:`ZoneSamples` draws each group's share with a ``RandomGeoSampler`` and serves them as one map-style
dataset.  torchgeo is imported only by the functions that need it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.dataset.ids import natural_key

ZONES_DIR = "zones"


def epsg_of(crs: str) -> int:
    """``"EPSG:32633"`` -> 32633 (release tiles are always in a WGS 84 UTM zone)."""
    auth, _, code = str(crs).partition(":")
    if auth.upper() != "EPSG" or not code.isdigit():
        raise ValueError(f"not an EPSG code: {crs!r}")
    return int(code)


def zone_lines(records: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{"zones/<epsg>.txt": [image paths]}`` of manifest image records, paths in natural order."""
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(f"{ZONES_DIR}/{epsg_of(str(r['crs']))}.txt", []).append(str(r["image"]))
    return {k: sorted(v, key=natural_key) for k, v in sorted(out.items())}


def zone_section(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The manifest's ``zones`` section: ``{"<epsg>": {"file": "zones/<epsg>.txt", "images": n}}``."""
    return {PurePosixPath(f).stem: {"file": f, "images": len(v)} for f, v in zone_lines(records).items()}


def label_path(image_path: str) -> str:
    """The label of a release image path (``<region>/images/x.tif`` -> ``<region>/labels/x.tif``)."""
    p = PurePosixPath(image_path)
    return str(p.parent.parent / "labels" / p.name)


def sample_lengths(counts: Mapping[Any, int], total: int) -> dict[Any, int]:
    """Split ``total`` samples between groups in proportion to their tile ``counts`` (largest remainder, ties
    to the group first in sorted order); the result sums to ``total``."""
    n = sum(counts.values())
    if n <= 0 or total <= 0:
        return {k: 0 for k in counts}
    exact = {k: total * c / n for k, c in counts.items()}
    out = {k: int(v) for k, v in exact.items()}
    left = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), str(k)))[:left]:
        out[k] += 1
    return out


def zone_groups(release_dir: str | Path, split: str | None = None) -> dict[tuple[int, float], list[str]]:
    """``{(epsg, gsd): [absolute image paths]}`` of a release (one split, or all): the zone files, split by
    GSD (a RasterDataset also resamples every file to the first one's resolution)."""
    import json

    root = Path(release_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    by_path = {r["image"]: r for r in manifest["images"]}
    out: dict[tuple[int, float], list[str]] = {}
    for lines in zone_lines(manifest["images"]).values():
        for image in lines:
            rec = by_path[image]
            if split is None or rec["split"] == split:
                out.setdefault((epsg_of(rec["crs"]), float(rec["gsd"])), []).append(str(root / image))
    return dict(sorted(out.items()))


def zone_datasets(release_dir: str | Path, split: str | None = None, **kwargs: Any
                  ) -> dict[tuple[int, float], Any]:
    """``{(epsg, gsd): IntersectionDataset}`` of images and labels per zone group (module docstring); ``kwargs``
    go to both ``RasterDataset``s (e.g. ``transforms``, ``cache``)."""
    from torchgeo.datasets import RasterDataset

    class ReleaseImages(RasterDataset):
        filename_glob = "*.tif"
        is_image = True

    class ReleaseLabels(RasterDataset):
        filename_glob = "*.tif"
        is_image = False

    out = {}
    for key, images in zone_groups(release_dir, split).items():
        root = Path(release_dir)
        labels = [str(root / label_path(str(Path(p).relative_to(root).as_posix()))) for p in images]
        out[key] = ReleaseImages(paths=images, **kwargs) & ReleaseLabels(paths=labels, **kwargs)
    return out


def tile_counts(datasets: Mapping[Any, Any]) -> dict[Any, int]:
    """Tiles (image files) per group of :func:`zone_datasets`."""
    return {k: len(ds.datasets[0].files) for k, ds in datasets.items()}


class ZoneSamples:
    """A map-style dataset of ``length`` random patches of ``size`` pixels, each group of :func:`zone_datasets`
    contributing in proportion to its tile count (:func:`sample_lengths`) through its own ``RandomGeoSampler``
    (seeded with ``seed``); item ``i`` is that group's sample at the ``i``-th query, in shuffled order."""

    def __init__(self, datasets: Mapping[Any, Any], *, size: float | tuple[float, float], length: int,
                 seed: int = 0):
        import torch
        from torchgeo.samplers import RandomGeoSampler

        self.datasets = dict(datasets)
        self.lengths = sample_lengths(tile_counts(self.datasets), length)
        generator = torch.Generator().manual_seed(seed)
        queries: list[tuple[Any, Any]] = []
        for key, ds in self.datasets.items():
            if self.lengths[key]:
                sampler = RandomGeoSampler(ds, size=size, length=self.lengths[key], generator=generator)
                queries.extend((key, q) for q in sampler)
        order = torch.randperm(len(queries), generator=generator).tolist()
        self.queries = [queries[i] for i in order]

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key, query = self.queries[index]
        return self.datasets[key][query]
