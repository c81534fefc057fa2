"""Benchmark of pipeline.dataset.selection.sampling.select_hard_images on synthetic 1024x1024 candidate tiles.

Generates ``--n`` candidate tiles (3-band uint8 image + 1-band label GeoTIFF, 1024x1024, uncompressed) in a
temporary folder: class maps are Voronoi partitions drawn at 256x256 and upscaled (nearest) to 1024, each
region painted in a class-typical colour plus Gaussian noise.  A ``--hard-rate`` share of tiles (seeded
choice) is hard: 40-80 small segments of all classes, half painted in another class's colour, strong noise;
the rest are easy (2-4 large segments of common classes, little noise).  Then runs the selection
(k=10, quota=60 by default) and prints the time per 100 candidate tiles split into phases, the regressor's
cross-validated Spearman rho and how strongly the "hard" picks favour the truly hard tiles.

    python bench/bench_selection.py --n 100
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dataset.selection.sampling import select_hard_images

TYPICAL = {1: (150, 120, 90), 2: (150, 165, 95), 3: (165, 165, 160), 4: (95, 95, 100),
           5: (40, 90, 45), 6: (35, 65, 110), 7: (115, 175, 80), 8: (200, 95, 75)}


def make_tile(rng: np.random.Generator, px: int, hard: bool) -> tuple[np.ndarray, np.ndarray]:
    """(image (px, px, 3) uint8, label (px, px) uint8); the class map is drawn at px/4 and upscaled."""
    low = max(px // 4, 8)
    n = int(rng.integers(40, 80)) if hard else int(rng.integers(2, 5))
    pts = rng.uniform(0, low, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:low, 0:low].astype(np.float32)
    seg = ((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).argmin(-1).astype(np.int32)
    seg = cv2.resize(seg.astype(np.float32), (px, px), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    classes = rng.choice([1, 2, 3, 4, 5, 6, 7, 8] if hard else [2, 3, 5, 6, 7], n)
    colours = np.array([TYPICAL[int(c)] for c in classes], np.float32)
    if hard:
        swap = rng.random(n) < 0.5
        colours[swap] = [TYPICAL[int(c)] for c in rng.choice(list(TYPICAL), int(swap.sum()))]
    noise = rng.standard_normal((px, px, 3), dtype=np.float32) * (18 if hard else 6)
    image = np.clip(colours[seg] + noise, 0, 255).astype(np.uint8)
    return image, classes[seg].astype(np.uint8)


def write_tif(path: Path, arr: np.ndarray) -> str:
    arr = arr if arr.ndim == 3 else arr[..., None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=arr.shape[2],
                       dtype="uint8", crs="EPSG:32633", transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000)) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="number of candidate tiles")
    ap.add_argument("--px", type=int, default=1024, help="tile side length in pixels")
    ap.add_argument("--size", type=int, default=256, help="model/feature input size")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quota", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--random-fraction", type=float, default=0.5)
    ap.add_argument("--hard-rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_selection_") as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(args.seed)
        hard_ids: set[str] = set()
        candidates = []
        t0 = time.perf_counter()
        for i in range(args.n):
            hard = bool(rng.random() < args.hard_rate)
            image, label = make_tile(rng, args.px, hard)
            cid = f"tile_{i:04d}"
            if hard:
                hard_ids.add(cid)
            candidates.append({"id": cid, "image": write_tif(folder / f"{cid}.tif", image),
                               "label": write_tif(folder / f"{cid}_label.tif", label)})
        gen_s = time.perf_counter() - t0
        print(f"generated {args.n} tiles of {args.px}x{args.px} ({len(hard_ids)} hard) in {gen_s:.1f} s")

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        res = select_hard_images(candidates, quota=args.quota, k=args.k, seed=args.seed, epochs=args.epochs,
                                 size=args.size, random_fraction=args.random_fraction, folds=args.folds,
                                 threads=args.threads, device=args.device, timings=timings)
        total = time.perf_counter() - t0

    scale = 100.0 / args.n
    print(f"selection of {args.quota} of {args.n} (k={args.k}, size={args.size}, epochs={args.epochs}, "
          f"threads={args.threads}): {total:.1f} s total, {total * scale:.1f} s per 100 candidates")
    if res["fallback"]:
        print("fallback:", res["fallback"])
        return 0
    m, r = res["model"], res["regressor"]
    print(f"model: {m['architecture']}, {m['params']} params, {m['folds']} folds, train sizes "
          f"{m['train_sizes']}, device {m['device']}")
    print("time per 100 candidates by phase (s):")
    for phase in ("read", "features", "training", "loss", "regression", "prediction"):
        print(f"  {phase:<11} {timings[phase] * scale:8.2f}")
    other = total - sum(timings.values())
    print(f"  {'other':<11} {other * scale:8.2f}")
    print(f"regressor: {r['type']} on {r['n_train']} held-out losses, {r['n_features']} features; "
          f"CV Spearman rho = {r['cv_spearman_rho']} ({r['cv_folds']} folds)")
    labelled = set(res["labelled"])
    rest = [c["id"] for c in candidates if c["id"] not in labelled]
    base = sum(i in hard_ids for i in rest) / max(len(rest), 1)
    picked = [s["id"] for s in res["selected"] if s["reason"] == "hard"]
    randoms = [s["id"] for s in res["selected"] if s["reason"] == "random"]
    lab_hard = sum(i in hard_ids for i in labelled)
    print(f"labelled subset: {len(labelled)} ({lab_hard} truly hard)")
    if picked:
        print(f"truly hard among 'hard' picks: {sum(i in hard_ids for i in picked)}/{len(picked)} "
              f"(base rate {base:.2f})")
    if randoms:
        print(f"truly hard among 'random' picks: {sum(i in hard_ids for i in randoms)}/{len(randoms)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
