"""Benchmark of the hard-image selection (issue 14) at the DEFAULT settings on the synthetic
OpenEarthMap-shaped pool.

Generates on demand (or loads from its cache folder, ``--root``, default ``$OEM_SELECTION_POOL`` or
``<tmp>/oem-selection-pool``; never committed) the default pool (:mod:`bench.selection_pool`: 97 regions of
50-120 candidate 1024 px COG tiles, 8312 in all, every tile with its true label), runs
:func:`pipeline.dataset.selection.core.select` with ``SelectionConfig(seed=s)`` for each seed in a fresh
process (so each peak RSS is its own), and prints one table: regions, candidates, labelled n, cross-validated
rho with its bootstrap 95 % interval, the out-of-sample rho of the predictions vs the true loss of all other
candidates, the hard/random mean true loss ratio at k=10 (means over the sampled regions) next to its oracle
ceiling (the same protocol and random picks with the true losses as predictions), ms per candidate (read +
features + prediction, wall and CPU), training time (wall, CPU, and scaled to 500 labelled tiles), peak RSS,
device, the 1-min load average, and MET / NOT MET per target. The reference line times reading the full 1024
px tiles instead of the 256 px overview (same tiles, same run).

    python bench/bench_selection.py                  # seed 42 (the build's default seed)
    python bench/bench_selection.py --seeds 42 43 44
    python bench/bench_selection.py --regions 30 --px 256 --crop 256   # quick before/after quality check
    python bench/bench_selection.py --train-only 500  # training alone (bench/selection_train.py)

``--regions``/``--px`` use a smaller pool (30 regions of 256 px tiles: about 2550 candidates, generated in
about 1 min) to compare settings quickly; ``--crop``, ``--batch-size``, ``--epochs``, ``--threads`` override
the model's defaults.  ``--train-only N`` times the default cross-fit (3 fold models + the deployed model)
alone on N synthetic labelled 256 px tiles rendered in memory and prints wall, CPU seconds, steps, s per
step, the 1-min load average, a 1- vs 2-thread probe and the projected wall on an idle 2-core machine.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DEFAULT_ROOT = os.environ.get("OEM_SELECTION_POOL") or str(Path(tempfile.gettempdir()) / "oem-selection-pool")

TARGETS = {"rho": 0.5, "ratio": 1.3, "ms_per_candidate": 40.0, "train_s_per_500": 300.0}


def _child(args: argparse.Namespace) -> int:
    """Run one seed; print one JSON line."""

    from bench import selection_pool as poolgen
    from pipeline.dataset.selection.config import SelectionConfig
    from pipeline.dataset.selection.core import select
    from pipeline.dataset.selection.result import Candidate

    index = poolgen.generate_pool(_pool_params(args), args.root, workers=2, verbose=False)
    pool = {r: [Candidate(t["id"], t["image"], t["label"]) for t in tiles] for r, tiles in index["regions"].items()}
    cfg = SelectionConfig(seed=args.seed, model=_model_config(args))
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    res = select(pool, config=cfg, device=args.device, progress=_Progress(t0))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    d = res.to_dict()
    t = res.timings
    n = max(1.0, t.get("n_candidates", 0.0))
    stream = ("read", "image_stats", "model_stats", "predict")
    out = {"seed": args.seed, "regions": len(pool), "sampled": sum(r.stage == "selected" for r in res.regions.values()),
           "candidates": sum(len(v) for v in pool.values()), "predicted": int(n),
           "gate": d["gate"], "evaluation": d["evaluation"], "fallback": d["fallback"],
           "device": d["model"]["device"] if d["model"] else "n/a", "threads": cfg.model.threads,
           "ms_wall": 1000 * sum(t.get(k, 0) for k in stream) / n,
           "ms_cpu": 1000 * sum(t.get(k + "_cpu", 0) for k in stream) / n,
           "train_wall": t.get("training", 0.0), "train_cpu": t.get("training_cpu", 0.0),
           "n_labelled": d["gate"]["n"] if d["gate"] else 0, "total_wall": wall, "total_cpu": cpu,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "load_start": load0, "load_end": os.getloadavg()[0], "timings": d["timings"],
           "weights_sha256": d["model"]["weights_sha256"] if d["model"] else None,
           "selected_sha256": _digest(d), "generation": index["generation"]}
    print("RESULT " + json.dumps(out))
    return 0


def _model_config(args: argparse.Namespace):
    """The default ModelConfig with the command line's overrides."""
    import dataclasses

    from pipeline.dataset.selection.config import ModelConfig

    over = {"epochs": args.epochs, "threads": args.threads, "crop": args.crop, "batch_size": args.batch_size}
    return dataclasses.replace(ModelConfig(), **{k: v for k, v in over.items() if v is not None})


class _Progress:
    """Progress lines on stderr (elapsed wall seconds, 1-min load), at most one per 10 % of a phase."""

    def __init__(self, t0: float) -> None:
        self.t0, self.last = t0, ("", -1.0)

    def __call__(self, message: str, fraction: float) -> None:
        if message != self.last[0] or fraction >= self.last[1] + 0.1 or fraction >= 1.0 > self.last[1]:
            self.last = (message, fraction)
            print(f"  [{time.perf_counter() - self.t0:7.1f} s, load {os.getloadavg()[0]:.1f}] {message} "
                  f"{100 * fraction:.0f} %", file=sys.stderr, flush=True)


def _digest(d: dict) -> str:
    import hashlib

    sel = [(r, s["id"], s["reason"]) for r, v in sorted(d["regions"].items()) for s in v["selected"]]
    return hashlib.sha256(json.dumps(sel).encode()).hexdigest()[:16]


def _pool_params(args: argparse.Namespace):
    """The default pool, or a smaller one (``--regions``, ``--px``) for quick before/after quality checks."""
    import dataclasses

    from bench import selection_pool as poolgen

    over = {"n_regions": args.regions, "px": args.px}
    return dataclasses.replace(poolgen.PoolParams(), **{k: v for k, v in over.items() if v is not None})


def _reference(root: str, params, count: int = 64) -> tuple[float, float]:
    """ms per tile to read the 256 px overview vs the full 1024 px image (first ``count`` tiles)."""
    from bench import selection_pool as poolgen
    from pipeline.dataset.selection.io import read_image

    index = poolgen.generate_pool(params, root, workers=2, verbose=False)
    paths = [t["image"] for tiles in index["regions"].values() for t in tiles][:count]
    out = []
    for size in (256, params.px):
        t0 = time.perf_counter()
        for p in paths:
            read_image(p, size)
        out.append(1000 * (time.perf_counter() - t0) / len(paths))
    return out[0], out[1]


def _mark(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _table(rows: list[dict], ref: tuple[float, float]) -> None:
    head = (f"{'seed':>4} {'regions':>7} {'sampled':>7} {'cands':>6} {'n lab':>5} {'rho [95% CI]':>22} "
            f"{'wr rho':>6} {'cand rho':>8} {'hard/rand':>9} {'(oracle)':>8} {'ms/cand wall (cpu)':>18} "
            f"{'train s wall (cpu) /500':>26} {'RSS MB':>7} {'device':>6} {'load':>9}")
    print(head)
    for r in rows:
        g, e = r["gate"] or {}, r["evaluation"]
        per500 = r["train_wall"] * 500 / max(1, r["n_labelled"])
        nan = float("nan")
        rho = f"{g.get('rho') or nan:.3f} [{g.get('ci_low') or nan:.3f}, {g.get('ci_high') or nan:.3f}]"
        print(f"{r['seed']:>4} {r['regions']:>7} {r['sampled']:>7} {r['candidates']:>6} {r['n_labelled']:>5} {rho:>22} "
              f"{g.get('within_region_rho') or nan:>6.3f} {e.get('candidate_rho', nan):>8.3f} "
              f"{e.get('ratio') or nan:>9.3f} {e.get('oracle_ratio') or nan:>8.3f} "
              f"{r['ms_wall']:>8.1f} ({r['ms_cpu']:>5.1f} cpu) "
              f"{r['train_wall']:>7.0f} ({r['train_cpu']:>5.0f} cpu) {per500:>6.0f}/500 {r['peak_rss_mb']:>7.0f} "
              f"{r['device']:>6} {r['load_start']:>4.1f}-{r['load_end']:<4.1f}")
        if r["fallback"]:
            print(f"     fallback: {r['fallback']}")
    print(f"reference: reading the 256 px overview {ref[0]:.1f} ms/tile vs the full-resolution tile "
          f"{ref[1]:.1f} ms/tile "
          f"({ref[1] / ref[0]:.1f}x)")
    print("targets (every seed):")
    checks = [
        (f"rho >= {TARGETS['rho']} with CI lower bound > 0",
         all(((r["gate"] or {}).get("rho") or 0) >= TARGETS["rho"] and ((r["gate"] or {}).get("ci_low") or 0) > 0
             for r in rows)),
        (f"hard/random mean true loss (k=10) >= {TARGETS['ratio']}",
         all((r["evaluation"].get("ratio") or 0) >= TARGETS["ratio"] for r in rows)),
        (f"<= {TARGETS['ms_per_candidate']:.0f} ms per candidate (wall)",
         all(r["ms_wall"] <= TARGETS["ms_per_candidate"] for r in rows)),
        (f"training <= {TARGETS['train_s_per_500']:.0f} s per 500 labelled tiles (wall)",
         all(r["train_wall"] * 500 / max(1, r["n_labelled"]) <= TARGETS["train_s_per_500"] for r in rows)),
        ("no fallback", all(not r["fallback"] for r in rows)),
    ]
    for name, ok in checks:
        print(f"  {name:<55} {_mark(ok)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=DEFAULT_ROOT, help="cache folder of the synthetic pool")
    ap.add_argument("--regions", type=int, help="pool of this many regions instead of 97 (quick quality checks)")
    ap.add_argument("--px", type=int, help="pool tile side instead of 1024 px")
    ap.add_argument("--epochs", type=float)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device")
    ap.add_argument("--crop", type=int, help="training crop side (ModelConfig.crop)")
    ap.add_argument("--batch-size", type=int, help="training batch (ModelConfig.batch_size)")
    ap.add_argument("--train-only", type=int, metavar="N",
                    help="only time the cross-fit on N synthetic labelled 256 px tiles (bench/selection_train.py)")
    ap.add_argument("--probe-only", action="store_true", help="with --train-only: only the thread probe")
    ap.add_argument("--json", help="also write the per-seed records here")
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    if args.train_only:
        from bench.selection_train import train_only

        train_only(args.train_only, _model_config(args), probe_only=args.probe_only)
        return 0
    from bench import selection_pool as poolgen

    index = poolgen.generate_pool(_pool_params(args), args.root, workers=2)  # prints generation time
    print(f"pool {index['key']}: generation {index['generation']}")
    rows = []
    for seed in args.seeds:
        cmd = [sys.executable, __file__, "--child", "--seed", str(seed), "--root", args.root]
        for flag, v in (("--regions", args.regions), ("--px", args.px), ("--epochs", args.epochs),
                        ("--threads", args.threads), ("--device", args.device), ("--crop", args.crop),
                        ("--batch-size", args.batch_size)):
            if v is not None:
                cmd += [flag, str(v)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # progress (stderr) shows as it comes
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(lines[-1][7:]))
        r = rows[-1]
        print(f"seed {seed}: done in {r['total_wall']:.0f} s wall, {r['total_cpu']:.0f} s CPU", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    _table(rows, _reference(args.root, _pool_params(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
