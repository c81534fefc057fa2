"""OpenEarthMap-style land-cover release builder.

The pure library lives in this package's modules (raster, tiling, segments, splits, stats, manifest, ...).
Importing the package also registers the Luigi tasks of :mod:`tasks`, so that
``luigi --module pipeline BuildRelease`` finds them.
"""
__version__ = "0.1.0"

import tasks  # noqa: E402,F401  (the Luigi entry point: registers BuildRelease and its dependencies)
