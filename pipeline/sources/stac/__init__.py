"""STAC sources: kind ``stac`` (any STAC API or static catalog) and ``openaerialmap`` on OpenAerialMap's STAC API.

* :mod:`.fetch`: ``fetch_stac``, the fetch of a source: search, per item the asset (whole file, or the window of
  a COG covering the bbox, read with range requests through :mod:`pipeline.sources.cog_window`), the
  ``stac-index.json`` the adapter (:mod:`pipeline.sources.adapters.stac`) reads;
* :mod:`.search`: ``find_items``, pystac-client search of an API or a walk of a static catalog;
* :mod:`.items`: facts read from items (licence, attribution, time, CRS, GSD, asset) and client-side filters;
* :mod:`.options`: checks of the sources' options (called by :mod:`pipeline.sources.config`);
* :mod:`.io`: the one place where STAC sources reach the network, under the network policy of
  :mod:`pipeline.sources.netpolicy` (``check_url``, sessions, GDAL paths and options, byte counters).
"""
