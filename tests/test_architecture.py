"""The architecture the code promises in docs/ARCHITECTURE.md, checked on the code itself.

* Size: no module of ``pipeline/``, ``tasks/`` or ``oem_demo/`` over :data:`MAX_MODULE_LINES` lines, no
  function over :data:`MAX_FUNCTION_LINES` lines (parsed with ``ast``; :data:`SIZE_ALLOWED` lists exceptions).
* Layering: ``pipeline/`` never imports Luigi or ``tasks`` (except the guarded entry point in
  ``pipeline/__init__.py``); each stage imports only the shared modules and the stages before it in the data
  flow, ``sources -> raster -> labels -> dataset -> release``; the shared modules import no stage; the demo
  generator ``oem_demo`` is imported only lazily, by the demo adapter.
* A pure library: importing pure modules in a fresh interpreter imports no Luigi and registers no Luigi event
  handler and no ``atexit`` hook; importing ``tasks`` (a build) registers them; ``luigi --module pipeline``
  finds the tasks.
* Packaging and docs: every package is in ``[tool.setuptools] packages``; every Luigi task class of ``tasks``
  and every stage subpackage of ``pipeline`` is named in docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.helpers_build import ROOT, pipeline_env

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
#: ``"path"`` or ``"path:function"`` -> why it may exceed the limits.  Keep it tiny.
SIZE_ALLOWED: dict[str, str] = {}

CODE_ROOTS = ("pipeline", "tasks", "oem_demo")
#: The stages of the build in data-flow order; a stage may import the shared modules and earlier stages.
STAGES = ("sources", "raster", "labels", "dataset", "release")
#: Modules of ``pipeline/`` shared by every stage (they import no stage).
SHARED = ("pipeline", "pipeline.__main__", "pipeline.atomic", "pipeline.constants", "pipeline.errors",
          "pipeline.limits", "pipeline.params", "pipeline.rng", "pipeline.scene", "pipeline.gcpause",
          "pipeline.forked", "pipeline.progress")
#: Imports allowed although the rules forbid them: (importing module, imported module) -> why.
LAYERING_ALLOWED: dict[tuple[str, str], str] = {
    ("pipeline", "tasks"): "the Luigi entry point: imported only when luigi.cmdline loads the package",
    ("pipeline.sources.cog_window", "pipeline.raster.gsd"): "a STAC source's fetch checks the GSD an item declares "
    "against the file's, measured by the one definition of native GSD (native_gsd_m, crs_label)",
}
#: Stage modules ``oem_demo`` may import anyway: (importing module, imported module) -> why.
DEMO_ALLOWED: dict[tuple[str, str], str] = {
    ("oem_demo.scale.regions", "pipeline.dataset.regions"): "the scale generator names its region folders with "
    "the pipeline's slug and checks every scene centre against the pipeline's own region rule (locate)",
}


def _modules(*roots: str) -> list[tuple[str, Path]]:
    out = []
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module level)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for node in tree.body:  # an `if` at module level (the guarded entry point) counts as module level
        if isinstance(node, ast.If):
            top_level.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((base, node.lineno, id(node) in top_level))
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipeline":
        return None
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    return "shared"


# --- size -----------------------------------------------------------------------------------------------

def test_modules_and_functions_are_small():
    problems = []
    for _module, path in _modules(*CODE_ROOTS):
        rel = path.relative_to(ROOT).as_posix()
        source = path.read_text()
        n = len(source.splitlines())
        if n > MAX_MODULE_LINES and rel not in SIZE_ALLOWED:
            problems.append(f"{rel}: {n} lines (> {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in SIZE_ALLOWED:
                    problems.append(f"{rel}:{node.lineno} {node.name}(): {length} lines (> {MAX_FUNCTION_LINES})")
    assert not problems, "split these along their seams:\n" + "\n".join(problems)


# --- layering -------------------------------------------------------------------------------------------

def test_library_never_imports_luigi_or_tasks():
    problems = []
    for module, path in _modules("pipeline"):
        for name, line, _ in _imports(path, module):
            top = name.split(".")[0]
            if top in ("luigi", "tasks") and (module, name) not in LAYERING_ALLOWED:
                problems.append(f"{module}:{line} imports {name}")
    assert not problems, "\n".join(problems)


def test_the_entry_point_imports_tasks_only_under_luigis_command_line():
    tree = ast.parse((ROOT / "pipeline" / "__init__.py").read_text())
    guarded = [n for n in tree.body if isinstance(n, ast.If) and "luigi.cmdline" in ast.unparse(n.test)]
    assert guarded, "pipeline/__init__.py must guard `import tasks` with `'luigi.cmdline' in sys.modules`"
    unguarded = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                 and any(a.name.split(".")[0] in ("tasks", "luigi") for a in n.names)]
    assert not unguarded, "pipeline/__init__.py imports tasks or luigi unconditionally"


def test_stages_import_only_shared_modules_and_earlier_stages():
    order = {s: i for i, s in enumerate(STAGES)}
    problems = []
    for module, path in _modules("pipeline"):
        mine = _stage(module)
        for name, line, _ in _imports(path, module):
            theirs = _stage(name)
            if theirs is None or theirs == "shared" or (module, name) in LAYERING_ALLOWED:
                continue
            if mine == "shared":
                problems.append(f"{module}:{line} (shared) imports the stage module {name}")
            elif order[theirs] > order[mine]:
                problems.append(f"{module}:{line} ({mine}) imports {name} of the later stage {theirs}")
    assert not problems, "\n".join(problems)


def test_demo_generator_is_outside_the_library_and_imported_lazily():
    problems = []
    for module, path in _modules("pipeline", "tasks"):
        for name, line, top_level in _imports(path, module):
            if name.split(".")[0] != "oem_demo":
                continue
            if module != "pipeline.sources.adapters.demo" or top_level:
                problems.append(f"{module}:{line} imports {name}"
                                + (" at module level" if top_level else " (only the demo adapter may)"))
    for module, path in _modules("oem_demo"):
        for name, line, _ in _imports(path, module):
            if (module, name) in DEMO_ALLOWED:
                continue
            if name.split(".")[0] in ("luigi", "tasks") or (_stage(name) not in (None, "shared")):
                problems.append(f"{module}:{line} imports {name} (oem_demo may use pipeline's shared modules only)")
    assert not problems, "\n".join(problems)


# --- a pure library -------------------------------------------------------------------------------------

PURE_MODULES = (
    "pipeline", "pipeline.labels.segments", "pipeline.raster.plan", "pipeline.raster.tiling",
    "pipeline.sources.config", "pipeline.sources.adapters", "pipeline.dataset.splits.trials",
    "pipeline.dataset.stats.write", "pipeline.release.writer", "pipeline.release.validate.report",
)


#: Run first in the subprocesses below: records every ``atexit.register`` call as ``module.qualname`` (the
#: standard library and dependencies register their own hooks on import; only ours matter here).
SPY = """
import atexit
HOOKS = []
_register = atexit.register
def _spy(fn, *args, **kwargs):
    HOOKS.append(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}")
    return _register(fn, *args, **kwargs)
atexit.register = _spy
"""


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SPY + textwrap.dedent(code)], cwd=ROOT, env=pipeline_env(),
                          capture_output=True, text=True, timeout=120)


def test_importing_the_library_registers_no_luigi_handler_and_no_atexit_hook():
    proc = _python(f"""
        import importlib, sys
        for name in {PURE_MODULES!r}:
            importlib.import_module(name)
        assert "luigi" not in sys.modules, sorted(m for m in sys.modules if m.startswith("luigi"))
        assert "tasks" not in sys.modules
        ours = [h for h in HOOKS if h.split(".")[0] in ("pipeline", "tasks", "oem_demo", "luigi")]
        assert not ours, ours
        import luigi
        assert not luigi.Task._event_callbacks, luigi.Task._event_callbacks
        print("pure")
    """)
    assert proc.returncode == 0 and "pure" in proc.stdout, proc.stderr


def test_importing_tasks_starts_a_build_with_the_summary_installed():
    proc = _python("""
        import luigi
        assert not luigi.Task._event_callbacks
        import tasks
        handlers = luigi.Task._event_callbacks.get(luigi.Task, {})
        assert set(handlers) >= {luigi.Event.SUCCESS, luigi.Event.FAILURE}, handlers
        assert HOOKS.count("tasks.summary._at_exit") == 1, HOOKS
        tasks.summary.install()  # idempotent
        assert HOOKS.count("tasks.summary._at_exit") == 1, HOOKS
        print("installed")
    """)
    assert proc.returncode == 0 and "installed" in proc.stdout, proc.stderr


@pytest.mark.parametrize("launcher", [["-m", "luigi"], ["-c", "import sys; from luigi.cmdline import luigi_run; "
                                                              "sys.exit(luigi_run(sys.argv[1:]))"]])
def test_luigi_module_pipeline_finds_the_tasks(launcher):
    """``python -m luigi --module pipeline BuildRelease --help-all`` (and the ``luigi`` script's entry point) load
    the tasks through ``pipeline/__init__.py``: their parameters are listed (without them, none would be)."""
    proc = subprocess.run([sys.executable, *launcher, "--module", "pipeline", "BuildRelease", "--help-all"], cwd=ROOT,
                          env=pipeline_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--PipelineConfig-release" in proc.stdout, proc.stdout


# --- packaging and docs ---------------------------------------------------------------------------------

def test_every_package_is_installed():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {m for m, p in _modules(*CODE_ROOTS) if p.name == "__init__.py"}
    assert found == declared, f"add to / remove from [tool.setuptools] packages: {sorted(found ^ declared)}"


def test_architecture_doc_names_every_task_and_stage():
    import luigi

    import tasks

    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    classes = {
        cls.__name__ for mod in list(sys.modules.values()) if getattr(mod, "__name__", "").startswith("tasks")
        for _, cls in inspect.getmembers(mod, inspect.isclass)
        if issubclass(cls, luigi.Task) and cls.__module__.startswith("tasks.")
    }
    assert {"BuildRelease", "SelectTiles", "ComputeStats"} <= classes and tasks.BuildRelease
    stages = {p.name for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").is_file()}
    assert set(STAGES) <= stages
    missing = sorted(c for c in classes if not re.search(rf"\b{c}\b", doc))
    missing += sorted(f"pipeline/{s}/" for s in stages if f"pipeline/{s}/" not in doc)
    assert not missing, f"docs/ARCHITECTURE.md does not mention: {missing}"


def test_the_task_modules_load_torch_only_when_a_model_is_trained():
    """torch, scikit-learn and scipy take seconds to import: the tasks (every worker process) and the selection
    up to its decision to train import none of them, so a rebuild whose sampled regions are filled never does."""
    proc = _python("""
        import sys
        import tasks
        import pipeline.dataset.selection.core, pipeline.dataset.selection.record
        heavy = sorted(m for m in ("torch", "sklearn", "scipy") if m in sys.modules)
        assert not heavy, heavy
        import pipeline.dataset.selection.training
        assert "torch" in sys.modules
        print("light")
    """)
    assert proc.returncode == 0 and "light" in proc.stdout, proc.stderr
