"""Check a built release folder against its ``manifest.json``: ``python -m pipeline validate <dir>``.

One module per concern: :mod:`.report` (:func:`~.report.validate_release`, the command line; checks 1-2),
:mod:`.consistency` (3), :mod:`.rasters` (4-5), :mod:`.files` (6), :mod:`.split_files` (7), :mod:`.audit` (8),
:mod:`.uda` (9), :mod:`.changes` (10), :mod:`.outputs` (11) with :mod:`.stac` (the STAC catalog, offline);
:mod:`.common` holds what they share.

A build that continues a validated release passes a :class:`~.incremental.Trust` (:mod:`.incremental`): checks 4
and 11 and the schema checks of the image records and STAC items it names are not repeated; the command line
never does, and checks everything.

:func:`~.report.validate_release` returns problem lines; an empty list means the release is valid.  Every line
starts with the release-relative file it concerns (``manifest.json``, ``austin/images/austin_1.tif``,
``train.txt`` or, for a name found in several split files, ``train.txt, test.txt``), then ``": "`` and
what is wrong.  Lines come in a fixed order: manifest, then images and labels in manifest order, then
links and stray files, then ``files`` entries, then split files.

Checks
------
1. ``manifest.json`` exists and parses as JSON (else that single problem is returned).
2. ``schema_version`` is :data:`pipeline.release.manifest.SCHEMA_VERSION` (else that single problem is returned,
   because the rest cannot be interpreted); then full JSON-Schema validation, one line per error as
   ``manifest.json: schema: <path>: <message>`` (e.g. ``images[3].license``).
3. Manifest consistency: ids and image file names unique; ``image``/``label`` equal
   ``<region>/images/<id>.tif`` / ``<region>/labels/<id>.tif``; ``splits.train/val/test`` equal the number
   of images per split; each ``splits.regions`` entry's counts equal its region's images per split.
4. Each image and label: exists, SHA-256 equals the manifest's, opens with rasterio; image 3-band uint8,
   label 1-band uint8 with values in 0..8; the image's CRS, transform (each coefficient within 1e-9)
   and width x height equal the manifest's ``crs``/``transform``/``width``/``height``; the label's grid
   equals its image's (or the manifest's when the image cannot be read), reported as one
   ``grid differs from its image (<what> <label> vs <image>; ...)`` line; the label's pixel counts per
   class and of 0 equal ``class_pixels`` / ``unlabelled_pixels``.
5. Every file of the folder is in the manifest (an image or label of a record, or a ``files`` entry;
   ``manifest.json``, the split files and ``uda/`` and ``zones/``, which checks 7, 9 and 12 read line by line,
   aside, and the browser ``viewer/``, derived and never listed): ``notes.txt: not in the manifest``; and none
   is a symbolic link (``stats/a.csv: a symbolic link ...``: a link can point outside the release, and what it
   points at would be published).
6. ``files`` entries exist with the recorded SHA-256 and byte size.
7. Split files ``train.txt``, ``val.txt``, ``test.txt`` exist; lines are bare, non-blank file names
   without surrounding whitespace; no name twice in a file; every listed name is a manifest image; a name
   is in one split file only and it matches its manifest split; every manifest image is listed.
8. Split audit (lines start with ``manifest.json``, except leakage lines):

   * **ratios**: per region (sorted), each split's image count is within
     :func:`split_tolerance` ``= max(1, 10 % of the region's images)`` of
     :func:`pipeline.dataset.splits.trials.split_counts` for the ``created_with.split.ratios`` (default 6:1:3):
     ``manifest.json: region austin: 2 train images, expected 6 ± 1 (ratios 6:1:3 of 10 images)``;
   * **class coverage**: every class with pixels in a region has pixels in that region's train images:
     ``manifest.json: region austin: class 6 (water) has pixels in the region but none in train``;
   * **leakage**: two images whose footprints overlap (:func:`pipeline.dataset.splits.leakage.overlapping_pairs`) are in
     the same split, else ``austin/images/austin_1.tif, austin/images/austin_2.tif: footprints overlap
     (12.5% of the smaller) but splits differ (train vs test)``, pairs in natural order;
   * **UDA**: when the manifest has ``uda.regional``, it names exactly the manifest's regions;
   * **warnings, not errors** (:mod:`.audit`): a ratio line of a region that is one leakage group
     (``[single-leakage-group: ...]``) and a class-coverage line whose class only images held in val/test by
     the previous release have (``[class-frozen-out-of-train: ...]``) or that no image could have brought to
     train within the tolerance (``[train-quota-full: ...]``) are reported as ``warning:`` lines; a release
     with warnings only is valid (exit 0).
9. UDA split files: with a ``uda`` section, every file of :func:`pipeline.release.manifest.uda_lines` exists and
   lists exactly the image file names it implies, one a line in natural order
   (``uda/regional_source.txt: differs from the manifest's uda section (missing austin_1.tif; extra
   ghost_1.tif)``); ``uda.continent`` equals the continent-wise split of the images' regions; any other
   file under ``uda/`` is reported.
10. Changes report: when ``stats/changes.json`` exists it parses, names this release and the manifest's
   ``previous_release``, its current split counts equal the manifest's, and it lists no split moves (a
   release never moves an image it already released to another split).
11. Outputs for users (releases whose ``created_with.tile_format`` is ``COG``): every image and label is a
   valid Cloud-Optimized GeoTIFF (:func:`pipeline.raster.cog.validate_cog`; rio-cogeo warnings are not problems),
   ``austin/images/austin_1.tif: not a valid COG: ...``; the STAC catalog ``stac/collection.json`` follows
   the STAC 1.1.0, projection and label schemas (validated offline) with one item per image and both
   assets present (:func:`pipeline.release.validate.stac.validate_stac`); ``index.parquet`` exists.
12. Zone lists (releases with a ``zones`` section): ``zones/<epsg>.txt`` lists exactly the images of that UTM
   zone, one release path a line in natural order, and the section counts them
   (:mod:`pipeline.release.validate.zones`, :mod:`pipeline.release.torchgeo`); any other file under ``zones/``
   is reported.
13. Summary (releases with a ``summary`` section): its image and split counts and union areas equal what the
   images give (:func:`pipeline.release.summary.summary_problems`).
"""
