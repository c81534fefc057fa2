"""Release statistics: the tables and figures of the OpenEarthMap paper, computed from manifest records.

Modules: :mod:`.tables` (every number, and the CSV rows), :mod:`.plots` (the PNG figures), :mod:`.readme`
(the README that shows them), :mod:`.area` (the released area), :mod:`.write` (:func:`~.write.write_stats`: all
files of a release's ``stats/``).

Input: the manifest's image records (see ``pipeline/schemas/manifest.schema.json``); only ``id``,
``region``, ``country``, ``continent``, ``source``, ``split``, ``gsd``, ``bounds``, ``bounds_lonlat``,
``class_pixels``, ``unlabelled_pixels``, ``segments`` and ``segments_total`` are read.

Policies
--------
* Order never matters: records are sorted by ``id`` first; ids must be unique.  Every output is a pure
  function of the records, written byte-identically on every run (JSON with sorted keys, CSV with a fixed
  column order and ``\\n`` line ends, PNGs from matplotlib's Agg renderer with default rc settings, fixed
  dpi and no ``Software`` metadata).
* Classes are 1..8 (:data:`pipeline.constants.CLASS_NAMES`).  A class missing from ``class_pixels`` or
  ``segments`` counts 0; any other key (``"0"``, ``"9"``) or a negative count is an error.
  ``segments_total`` must equal the sum of ``segments``.
* *Share* of a class = its pixels / all **labelled** pixels (classes 1..8; unlabelled 0 excluded), in %,
  rounded to 4 decimals in the files (0.0 when there are no labelled pixels).  Pixel and segment counts
  are exact integers: the per-class pixel totals of Table 2 equal the sums over the images.
* Splits are always ``train``, ``val``, ``test`` (in that order, 0 when empty); another split name is an
  error.  Images per split sum to the number of images.
* Area = the union of the image footprints in km², rounded to 6 decimals (:mod:`.area`): tiles of different
  scenes or sources can overlap (leakage groups), and that ground counts once; overall (Table 1), per region
  (``regions.csv``) and per region, country and continent in ``area.json``.
* Continents: the six of the manifest schema in fixed order (Africa, Asia, Europe, North America, South
  America, Oceania), always listed, followed by any other name met (sorted).  Sources are sorted by name.
* Segments histogram: bins ``[0, 100), [100, 200), ... [2900, 3000)`` and an overflow bin ``>= 3000``
  (:data:`HIST_EDGES`); values are the fraction of images per bin (sum 1, or all 0 without images).
* Regions: one row per region name (sorted).  Country / continent / sources list every distinct value
  met for the region, sorted and joined with ``"; "`` (normally one).  The centre is the centre of the
  lon/lat bounding box of the region's tiles (regions are assumed not to straddle the antimeridian).
  Urban share = building + road + developed space.
* World map: plate carrée lon/lat axes with a 30° graticule.  Country outlines are drawn only when the
  Natural Earth 1:110m countries shipped with the installed ``pyogrio`` package (its test fixtures) are
  present locally; nothing is downloaded.  Without them the map has the graticule only.
"""
