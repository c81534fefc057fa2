"""OpenEarthMap-style land-cover release builder: the pure library, one subpackage per stage of the build.

``sources`` (sources.yaml, fetching, adapters) -> ``raster`` (grid plan, tiles, COGs) -> ``labels`` (each tile's
label, annotations, segments) -> ``dataset`` (pool, selection, splits, statistics, history) -> ``release``
(manifest, writer, validation, STAC, GeoParquet); shared modules: ``scene``, ``params``, ``errors``, ``limits``,
``atomic``, ``constants``, ``rng``.  See docs/ARCHITECTURE.md.

Importing the library has no side effects: it never imports Luigi or the tasks.  The one exception is Luigi's
command line (``luigi --module pipeline BuildRelease``, ``python -m luigi --module pipeline ...``), which loads
``luigi.cmdline`` before it imports this package: then the Luigi tasks of :mod:`tasks` are imported too, so
that Luigi finds them (importing :mod:`tasks` starts a build: it installs the build summary).
"""
import sys

__version__ = "0.1.0"

if "luigi.cmdline" in sys.modules:  # loaded by `luigi --module pipeline ...`: register the tasks
    import tasks  # noqa: F401
