"""``python -m pipeline browse <release> [--out DIR]``: write a release's static browser (see
:mod:`pipeline.release.viewer.site`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import ViewerError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release", type=Path, help="release folder (with manifest.json)")
    parser.add_argument("--out", type=Path, default=None, help="viewer folder (default <release>/viewer)")
    parser.add_argument("--reuse", type=Path, action="append", default=None, metavar="VIEWER_DIR",
                        help="an earlier viewer folder whose thumbnails may be reused (repeatable; default: "
                             "the previous release's viewer, from the manifest's previous_release)")
    parser.add_argument("--workers", type=int, default=2, help="threads that make thumbnails (default 2)")


def run(args: argparse.Namespace) -> int:
    from pipeline.release.viewer.site import summary_line, write_viewer

    try:
        summary = write_viewer(args.release, args.out, reuse=args.reuse, workers=args.workers)
    except ViewerError as exc:
        print(f"browse: {exc}", file=sys.stderr)
        return 1
    print(summary_line(summary))
    print(f"Open {summary['index'].resolve().as_uri()}")
    return 0
