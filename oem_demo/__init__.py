"""Built-in offline DEMO source: synthetic but realistic scenes in the on-disk layout of the real sources.

This package is not part of the runtime library: the ``demo`` adapter (:mod:`pipeline.sources.adapters.demo`)
imports it only when a demo source is fetched.  Modules: :mod:`.scenes` (the demo table), :mod:`.geodesy`
(file sizes, centres, geotransforms), :mod:`.world` and :mod:`.blocks` (a scene as vectors in metres),
:mod:`.render` (label and image rasters), :mod:`.writers` (one module per upstream layout) and
:mod:`.generate` (:func:`~.generate.generate_demo`).

``oem_demo.generate.generate_demo(root, seed, size)`` writes, deterministically from ``seed``, a set of land-cover
scenes under ``root`` in exactly the layouts the real adapters read (see ``docs/ARCHITECTURE.md`` and
``shared/docs/source-formats.md`` sections 1-3):

``xbd/train/{images,labels,landcover}/``
    ``<disaster>_<8-digit id>_pre_disaster.png`` (RGB, no georeference), the xBD label JSON
    (``features.lng_lat`` / ``features.xy`` WKT, same order and uid) and a single-band index PNG (0..8).
``inria/train/{images,gt,landcover}/<city><n>.tif``
    RGB uint8 GeoTIFF in a UTM CRS, building mask 255/0 and the 8-class label, all on one grid.
``spacenet/AOI_<k>_<City>_Train/{RGB-PanSharpen,geojson/buildings,landcover}/``
    3-band uint16 (11-bit, 0..2047) EPSG:4326 GeoTIFF, CRS84 building GeoJSON and the label raster.
``local/<region>/<name>.tif``, ``local/labels/<region>/<name>.tif``, ``local/footprints/<region>/<name>.geojson``
    RGB (or RGBA) uint8 GeoTIFFs in EPSG:3857 or UTM (some with a nodata value or an alpha border),
    the label raster and building polygons in the image CRS (GeoJSON with a ``crs`` member).

Policies
--------
* Determinism: every file is a pure function of ``(seed, size, scene)``.  Each scene file draws from its own
  ``numpy.random.Generator`` seeded with ``(seed, crc32(<scene key>))``; GeoTIFFs are written with fixed
  creation options (tiled, DEFLATE) and no timestamps, PNGs with fixed compression, JSON/GeoJSON with sorted
  keys and rounded coordinates (1e-9 degrees, 1e-3 metres, 1e-6 pixels).  Same seed and size -> byte-identical
  files.
* Geometry: each scene's land cover is generated as vectors in metric space (metres on the scene's ground
  grid: pixel ``(col, row)`` covers ``[col*gsd, (col+1)*gsd)`` metres east/south of the top-left corner), then
  rasterised on the pixel grid.  CRS pixel sizes realise the ground GSD exactly: UTM pixel = ``gsd`` metres;
  EPSG:3857 square pixel = ``gsd * a / (N(lat) cos(lat))`` (``~ gsd / cos(lat)``); EPSG:4326 pixel =
  ``gsd`` divided by the WGS84 metres per degree of longitude / latitude at the scene latitude.
* Buildings are rectangles (8-40 m) aligned with the street grid; class 8 is drawn last, so the class-8 pixels
  are exactly the rasterised rectangles and the written footprint vectors are those rectangles mapped through
  the scene's affine transform.  Buildings lie wholly inside the image and inside its valid (non-nodata) area,
  never on roads or water; footprints never overlap each other.
* Labels: ids 1..8 everywhere inside the valid area; 0 only in deliberate nodata borders (alpha = 0 or the
  nodata value in the image).
* Sizes: each scene is sized so that, after the pipeline reprojects it to local UTM at its target GSD (0.3 m for
  0.1/0.15 m sources, the native GSD for 0.25-0.5 m), a centred lattice of whole 1024-px tiles fits with a
  4 % margin (10 % for scenes with a nodata border).  ``DemoScene.expected_tiles`` states the count.
"""
