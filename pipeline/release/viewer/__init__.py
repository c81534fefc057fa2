"""A static, offline browser of a release: ``python -m pipeline browse <release>`` writes ``<release>/viewer/``.

:func:`write_viewer` (:mod:`pipeline.release.viewer.site`) reads only the release folder's own files (manifest,
``rejects.csv``, ``pending.csv``, STAC items, tiles); thumbnails come from the COG overviews
(:mod:`pipeline.release.viewer.thumbs`); the world map is a vendored Natural Earth outline
(:mod:`pipeline.release.viewer.worldmap`).  The page itself is ``assets/index.html`` + ``viewer.js`` + ``viewer.css``.
"""
from pipeline.errors import ViewerError
from pipeline.release.viewer.site import summary_line, viewer_data, write_viewer

__all__ = ["ViewerError", "summary_line", "viewer_data", "write_viewer"]
