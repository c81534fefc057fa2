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
    "relocate": ("pipeline.datafolder", "point a moved or copied data folder's work records at its files"),
    "plan": ("tasks.preview", "what a build with the same options would do, without running or writing anything"),
    "prune": ("tasks.prune", "list (--delete: remove) what a data folder holds that no build with these options uses"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that command's module is imported (``plan`` loads the Luigi tasks)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="OpenEarthMap-style release builder tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_extra_options", False):
            parser.error("unrecognized arguments: " + " ".join(extra))
    except SystemExit as exc:  # argparse: --help -> 0, usage error -> 2
        return int(exc.code or 0)
    args.extra = extra
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
