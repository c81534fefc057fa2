"""Building pre-annotations for annotators, and import of their finished land-cover annotations.

Modules: :mod:`.grid` (the tile grid everything works on), :mod:`.export` (pre-annotations, label
GeoTIFFs), :mod:`.importer` (finding and reading a finished annotation: raster files, dispatch),
:mod:`.vector` (GeoJSON / GeoPackage polygons), :mod:`.index` (class-id rasters), :mod:`.palette`
(class-colour rasters).

Everything here works on one *tile grid* (:class:`TileGrid`: CRS, affine transform, width, height), i.e.
the grid of one tile record of ``tiles.json``.  Pure functions, no Luigi.

Policies
--------

Rasterisation (footprints and vector annotations)
    ``all_touched=False``: a pixel takes a polygon's class when the pixel *centre* lies inside the
    polygon (GDAL's default rule).  For buildings at 0.3-0.5 m this is area-unbiased for large
    polygons (edge pixels half in / half out cancel on average), but polygons narrower than about one
    pixel can vanish or fragment (a 0.4 m wide shed, a thin wall).  ``all_touched=True`` instead burns
    every pixel the outline touches: nothing vanishes, but every building grows by about half a pixel
    on each side, an area bias of about ``perimeter * gsd / 2`` (a 10 x 10 m building at 0.3 m gains
    about 6 m2, +6 %), and neighbouring buildings merge.  Labels must not be inflated, so the pipeline
    uses the centre rule; ``rasterize_footprints`` offers ``all_touched`` for callers that prefer recall.

Repair
    Invalid polygons (self-intersections such as a bow-tie, ring crossings) are repaired with
    ``shapely.make_valid`` and only the polygonal parts of the result are kept; each repaired feature is
    counted in the report's ``repaired_polygons``.  A feature with nothing polygonal left after repair,
    an empty or missing geometry, or a non-polygonal geometry (point, line) rejects the whole file.
    Footprints (input to the pre-annotation) are repaired the same way, but unusable ones are dropped
    rather than rejected: they are machine input, not an annotator's work.

Vector annotations (``.geojson``/``.json``/``.gpkg``)
    The class attribute is the first of the columns ``class``, ``class_id``, ``class_name``, ``label``
    (column names compared case-insensitively) that the file has.  A value may be an integer id 1..8
    (ints, integral floats or digit strings) or a class name: a release name (``building``,
    ``developed space``/``developed_space``, ...) or an OpenEarthMap code name (``Bareland``, ``Grass``,
    ``Pavement``, ``Road``, ``Tree``, ``Water``, ``Cropland``, ``buildings``), case-insensitive, ``_``/``-``
    read as spaces.  Unknown names, ids outside 1..8 and missing values reject the file, naming them.
    CRS: a file that declares one is reprojected to the grid CRS.  A GeoJSON without a ``crs`` member is
    lon/lat WGS 84 by RFC 7946 when its coordinates are valid lon/lat; otherwise (and for a GeoPackage
    with an undefined SRS) the file has *no CRS*, and its coordinates are taken in the grid CRS only when
    they all fall inside the tile bounds (one pixel of slack), else the file is rejected
    ("no CRS and coordinates do not match the tile").  Polygons that do not intersect the tile are
    dropped and counted (``outside_polygons``) -- a file may cover several tiles -- but a file none of
    whose polygons intersects the tile is rejected ("extent does not overlap the tile").
    Overlaps are resolved by a fixed class priority, independent of feature order (editors reorder
    features freely): building > road > water > tree > developed space > agriculture land > rangeland
    > bareland (:data:`OVERLAP_PRIORITY`); small, thin objects win over the large background polygons
    they are usually drawn on top of.  Pixels no polygon covers are 0 (unlabelled).

Raster annotations (``.tif``/``.tiff``/``.png``)
    One band = *index* raster of class ids 0..8 (a TIFF colour table is ignored; pixels equal to the
    file's declared nodata read as 0); any other value rejects the file, naming the values and their
    pixel counts.  A one-band PNG with a colour palette is expanded through its palette and treated as
    a palette raster (paint programs order palettes arbitrarily).  Three bands (RGB) or four (RGBA) =
    *palette* raster in :data:`pipeline.constants.CLASS_COLORS`, black ``#000000`` = 0 unlabelled.
    Colour matching is **exact** (no tolerance): PNG and TIFF are lossless, so a correctly painted
    label has exact colours; off colours come from anti-aliased brushes, resampling or JPEG round
    trips, and they sit on class boundaries, where a nearest-colour guess is wrong as often as right.
    Any other colour rejects the file, naming each colour (``#RRGGBB``) and its pixel count.  With an
    alpha band, alpha 0 means unlabelled whatever the colour, alpha 255 is matched, other alpha values
    reject the file.  JPEG is not accepted.
    Alignment: a raster with a CRS must be on the tile grid: the same CRS, scale/rotation coefficients
    equal within 1e-6 relative (:data:`REL_TOL`), and the tile origin on a whole source pixel (within
    1e-3 pixel, :data:`PIXEL_TOL`) such that the tile window lies inside the raster; that window is
    read.  Otherwise "grid does not align".  A raster without CRS (a plain PNG, a TIFF without
    georeference) takes the tile grid only when its shape equals the tile shape exactly, else
    "shape WxH differs from tile WxH" (width x height).

Every bad annotation raises :class:`pipeline.errors.AnnotationRejected` ``(file, reason)``.
"""
