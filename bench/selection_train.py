"""Training-only benchmark of the hard-image selection's cross-fit (issue 14's "training <= 5 min for 500
labelled tiles on 2 cores"), used by ``bench/bench_selection.py --train-only N``.

Renders ``N`` labelled 256 px tiles in memory (:mod:`bench.selection_render`, 10 tiles per region, like the
every-10th labelled subset of 100-tile regions; no pool on disk), runs
:func:`pipeline.dataset.selection.model.cross_fit` with the default :class:`ModelConfig` (or the overrides
given) exactly as :func:`pipeline.dataset.selection.core.select` does, and prints wall, process CPU seconds,
optimizer steps, s per step and the 1-min load average.  A short probe then trains the same recipe for a few
steps at 1 and at 2 threads (back to back) to measure the thread scaling; the projected wall on an idle
2-core machine is ``CPU-s per step at 1 thread x steps / (1-thread wall / 2-thread wall)`` from that probe.
The machine may be shared: the CPU seconds are the figure to compare, the projection is approximate.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from bench import selection_render as poolrender

PER_REGION = 10


def _render_region(args: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    cv2.setNumThreads(1)
    seed, region, count, px = args
    style = poolrender.make_region(np.random.default_rng(np.random.SeedSequence([seed, region, 0xC0FFEE])), "")
    imgs, labs = [], []
    for t in range(count):
        img, lab, _ = poolrender.render_tile(style, np.random.default_rng(np.random.SeedSequence([seed, region, t])),
                                             px)
        imgs.append(img)
        labs.append(lab)
    return np.stack(imgs), np.stack(labs)


def render_labelled(n: int, px: int = 256, seed: int = 7, workers: int = 2) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` labelled tiles ``(images (n, px, px, 3), labels (n, px, px), region per tile)``."""
    jobs = [(seed, r, min(PER_REGION, n - r * PER_REGION), px) for r in range(math.ceil(n / PER_REGION))]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:  # not forked: torch
        # threads of the calling process may hold locks a forked child would inherit taken
        parts = list(ex.map(_render_region, jobs))
    groups = [f"r{r:03d}" for r, (_, _, c, _) in enumerate(jobs) for _ in range(c)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), groups


def _probe(images: np.ndarray, labels: np.ndarray, cfg, threads: int, steps: int) -> tuple[float, float]:
    """(wall s, CPU s) per step of ``steps`` training steps at ``threads`` threads (after 2 warm-up steps)."""
    import dataclasses

    from pipeline.dataset.selection.model import pick_device, torch_determinism, train_model

    dev = pick_device("cpu")
    n = cfg.batch_size * 2
    with torch_determinism(0, threads, dev):
        warm = dataclasses.replace(cfg, epochs=2 * cfg.batch_size / n)
        train_model(images[:n], labels[:n], warm, init_seed=0, seed=0, device=dev)
        c = dataclasses.replace(cfg, epochs=steps * cfg.batch_size / n)
        t0, c0 = time.perf_counter(), time.process_time()
        _, s = train_model(images[:n], labels[:n], c, init_seed=0, seed=0, device=dev)
        return (time.perf_counter() - t0) / s, (time.process_time() - c0) / s


def train_only(n: int, cfg, *, probe_steps: int = 8, probe_only: bool = False) -> dict:
    """Render ``n`` tiles, cross-fit ``cfg`` (a ModelConfig) on them, probe the thread scaling; print and
    return the figures.  ``probe_only``: skip the cross-fit; project its cost from the probe and the step
    count the cross-fit would take."""
    from pipeline.dataset.selection.model import cross_fit, pick_device, torch_determinism

    t0 = time.perf_counter()
    images, labels, groups = render_labelled(n, cfg.size)
    print(f"rendered {n} labelled {cfg.size} px tiles in {len(set(groups))} regions: "
          f"{time.perf_counter() - t0:.1f} s wall, load {os.getloadavg()[0]:.2f}", flush=True)
    if probe_only:
        return _probe_report(images, labels, groups, cfg, probe_steps)
    dev = pick_device("cpu")
    seeds = {"folds": 1, "init": 2, "train": 3}
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch_determinism(4, cfg.threads, dev):
        cf = cross_fit(images, labels, groups, cfg, seed=0, device=dev, seeds=seeds)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load1 = os.getloadavg()[0]
    steps = sum(cf.steps)
    w1, c1 = _probe(images, labels, cfg, 1, probe_steps)
    w2, c2 = _probe(images, labels, cfg, 2, probe_steps)
    scaling = w1 / w2
    projected = c1 * steps / scaling
    out = {"n": n, "models": len(cf.steps), "steps": cf.steps, "wall_s": wall, "cpu_s": cpu,
           "s_per_step_wall": wall / steps, "cpu_s_per_step": cpu / steps, "load_start": load0, "load_end": load1,
           "probe": {"wall_1t": w1, "cpu_1t": c1, "wall_2t": w2, "cpu_2t": c2, "scaling": scaling,
                     "load": os.getloadavg()[0]},
           "projected_idle_2core_wall_s": projected, "config": repr(cfg)}
    print(f"config: {cfg}")
    print(f"cross-fit on {n} tiles: {len(cf.steps)} models, steps {cf.steps} = {steps}; {wall:.1f} s wall, "
          f"{cpu:.1f} CPU-s; {wall / steps:.3f} s/step wall, {cpu / steps:.3f} CPU-s/step; "
          f"1-min load {load0:.2f} -> {load1:.2f}")
    print(f"thread probe ({probe_steps} steps, load {out['probe']['load']:.2f}): 1 thread {w1:.3f} s/step "
          f"({c1:.3f} CPU-s), 2 threads {w2:.3f} s/step ({c2:.3f} CPU-s): scaling {scaling:.2f}x")
    print(f"projected wall on an idle 2-core machine: {projected:.0f} s "
          f"({'MET' if projected <= 300 else 'NOT MET'} <= 300 s); CPU-s {cpu:.0f} "
          f"({'MET' if cpu <= 550 else 'NOT MET'} <= 550)")
    return out


def _probe_report(images: np.ndarray, labels: np.ndarray, groups: list[str], cfg, probe_steps: int) -> dict:
    from pipeline.dataset.selection.model import assign_folds

    fold_of = assign_folds(groups, cfg.folds, 1)
    sizes = [int(np.sum(fold_of != f)) for f in range(cfg.folds)] + [len(groups)]
    steps = [max(1, math.ceil(cfg.epochs * s / cfg.batch_size)) for s in sizes]
    w1, c1 = _probe(images, labels, cfg, 1, probe_steps)
    w2, c2 = _probe(images, labels, cfg, 2, probe_steps)
    load = os.getloadavg()[0]
    total = sum(steps)
    print(f"config: {cfg}")
    print(f"cross-fit on {len(groups)} tiles would take steps {steps} = {total}")
    print(f"thread probe ({probe_steps} steps, load {load:.2f}): 1 thread {w1:.3f} s/step ({c1:.3f} CPU-s), "
          f"2 threads {w2:.3f} s/step ({c2:.3f} CPU-s): scaling {w1 / w2:.2f}x")
    print(f"projected: {c2 * total:.0f} CPU-s at 2 threads, {c1 * total / (w1 / w2):.0f} s wall on an idle 2-core "
          f"machine")
    return {"steps": steps, "probe": {"wall_1t": w1, "cpu_1t": c1, "wall_2t": w2, "cpu_2t": c2, "load": load}}
