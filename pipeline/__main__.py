"""Command line: ``python -m pipeline <command> ...``.

Sub-commands are registered in :data:`COMMANDS` as ``name -> (module path, help)``; each module provides
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).  Exit status 2 means a usage
error (argparse).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("pipeline.release.validate.report", "check a release folder against its manifest.json"),
    "browse": ("pipeline.release.viewer.cli", "write a release's static, offline browser to <release>/viewer/"),
    "status": ("pipeline.release.status", "where a data folder stands: sources, regions (annotation loop), releases"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="OpenEarthMap-style release builder tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help -> 0, usage error -> 2
        return int(exc.code or 0)
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
