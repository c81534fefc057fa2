"""Segment and pixel counts of one label tile (the "segments" column of OpenEarthMap's Table 2).

Policies
--------
* A *segment* is a maximal set of pixels of one class that are **8-connected** (pixels touching only at
  a corner belong to the same segment).  Segments are counted per class; ``0`` (unlabelled / nodata) is
  not a class and is never counted unless a caller passes it in ``classes`` explicitly.
* An *edge segment* is a segment with at least one pixel in the first or last row or column of the tile
  (it may continue in the neighbouring tile, so it is possibly cut by tiling).
* Counting uses :func:`cv2.findContours` on one binary mask per class, in retrieval mode
  ``cv2.RETR_CCOMP``.  Suzuki-Abe border following traces foreground (non-zero) pixels with
  8-connectivity and background with 4-connectivity, and ``RETR_CCOMP`` organises the borders in a
  two-level hierarchy: level 1 = outer boundaries of connected components, level 2 = boundaries of their
  holes.  A component lying inside a hole of another component is put on level 1 again, so **the
  contours with no parent are exactly the 8-connected components**.  ``RETR_EXTERNAL`` is *not* used
  because it drops every contour inside an outer contour, i.e. it would miss a blob of class c inside
  the hole of a ring of class c (two segments, counted as one).
* Components touching the tile border are traced like any other: OpenCV >= 3.x pads the image with a
  zero border itself (checked once at import by tracing a 3x3 block of ones); with an OpenCV that
  does not (old versions treated the outermost rows/columns as zero) the mask is padded here and the
  contours shifted back.  The bounding box of a component's outer contour is the component's bounding
  box, so a component touches the tile border exactly when one of its outer contour's points lies on
  the border (tested for all contours at once with NumPy).
* Speed (``bench/run``, row 2): one histogram of the tile finds the classes present (absent classes
  cost nothing more), its four border lines the classes that can have edge segments; then one
  comparison and one ``findContours`` per present class, :data:`SEGMENT_THREADS` classes at a time.
  ``CHAIN_APPROX_SIMPLE`` keeps contours short
  (it keeps the extreme points, so bounding boxes stay exact).  On real label tiles (hundreds to a few
  thousand segments) this is faster than ``cv2.connectedComponents`` per class; the cost grows with the
  number of contours (OpenCV builds one array per contour), so pathological rasters such as per-pixel
  noise are slower.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from pipeline.constants import CLASS_IDS, NUM_CLASSES

#: Classes of one tile counted at the same time (threads: OpenCV and NumPy release the GIL), for
#: rasters of at least ``_PARALLEL_MIN_PIXELS`` pixels.  ``OEM_SEGMENT_THREADS`` overrides; 1 = sequential.
SEGMENT_THREADS = max(1, int(os.environ.get("OEM_SEGMENT_THREADS") or min(2, os.cpu_count() or 1)))
_PARALLEL_MIN_PIXELS = 256 * 256
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The module's thread pool, created on first use and again in a forked child (whose copy of the
    parent's pool has no threads)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(SEGMENT_THREADS, thread_name_prefix="segments"))
        return _pool[1]

#: The classes counted by default (0 = unlabelled is not a class).
DEFAULT_CLASSES: tuple[int, ...] = CLASS_IDS


def _check_label(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be a 2-D raster, got shape {label.shape}")
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise TypeError(f"label must have an integer dtype, got {label.dtype}")
    return label


def _traces_border_pixels() -> bool:
    """True when ``cv2.findContours`` traces pixels on the image border (OpenCV pads internally)."""
    probe = np.ones((3, 3), np.uint8)
    contours = cv2.findContours(probe, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) != 1:
        return False
    points = contours[0].reshape(-1, 2)
    return int(points.min()) == 0 and int(points.max()) == 2


#: Whether the mask must be padded with a zero border before tracing (old OpenCV only).
_PAD = not _traces_border_pixels()


def _find_contours(mask: np.ndarray) -> tuple[Sequence[np.ndarray], np.ndarray | None]:
    """``cv2.findContours(mask, RETR_CCOMP, CHAIN_APPROX_SIMPLE)`` with contour points in ``mask``'s
    pixel coordinates and border pixels traced, across OpenCV versions.

    OpenCV 3 returns ``(image, contours, hierarchy)``, OpenCV 2/4/5 ``(contours, hierarchy)``; the last
    two items are the same in both.
    """
    if _PAD:
        padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        result = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(-1, -1))
    else:
        result = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return result[-2], result[-1]


def _count_class(mask: np.ndarray, on_border: bool) -> tuple[int, int]:
    """(segments, edge segments) of the non-zero pixels of a uint8 ``mask`` (8-connectivity).

    ``on_border`` says whether any mask pixel lies on the mask's first/last row/column (else there are
    no edge segments and the contours are not inspected)."""
    height, width = mask.shape
    contours, hierarchy = _find_contours(mask)
    if hierarchy is None:  # empty mask
        return 0, 0
    outer = np.flatnonzero(hierarchy.reshape(-1, 4)[:, 3] < 0)  # no parent = a component
    n = int(outer.size)
    if not on_border:
        return n, 0
    # A component touches a border exactly when its outer contour has a point on that border line: the
    # contour's extreme points are its bounding box, and CHAIN_APPROX_SIMPLE only drops points inside
    # straight runs, never extremes.  Vectorised over the outer contours (no Python loop per point).
    outer_contours = [contours[int(i)] for i in outer]
    lengths = np.fromiter((len(c) for c in outer_contours), dtype=np.intp, count=n)
    points = np.concatenate(outer_contours).reshape(-1, 2)
    px, py = points[:, 0], points[:, 1]
    hit = (px == 0) | (py == 0) | (px == width - 1) | (py == height - 1)
    starts = np.zeros(n, dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    return n, int(np.count_nonzero(np.logical_or.reduceat(hit, starts)))


def _values_present(values: np.ndarray, classes: list[int]) -> set[int]:
    """The entries of ``classes`` that occur in the integer array ``values``."""
    if values.size == 0:
        return set()
    if values.dtype in (np.uint8, np.bool_):
        flat = np.ascontiguousarray(values.reshape(-1).view(np.uint8))
        counts = cv2.calcHist([flat], [0], None, [256], [0, 256]).ravel()  # ~4x faster than np.bincount
        return {c for c in classes if 0 <= c < 256 and counts[c]}
    found = set(np.unique(values).tolist())
    return {c for c in classes if c in found}


def count_segments(label: np.ndarray, classes: Iterable[int] = DEFAULT_CLASSES) -> dict:
    """Count the 8-connected segments of each class in a 2-D label raster.

    Returns ``{"segments": {"1": n, ...}, "edge_segments": {"1": n, ...}, "total": n}`` with one string
    key per entry of ``classes`` (all present, 0 for absent classes); ``total`` is the sum of
    ``segments``.  Pixels whose value is not in ``classes`` (e.g. 0 = unlabelled) act as background.
    See the module docstring for the connectivity and edge policies.
    """
    label = _check_label(label)
    classes = [int(c) for c in classes]
    segments = {str(c): 0 for c in classes}
    edge_segments = {str(c): 0 for c in classes}
    present = _values_present(label, classes)
    if present:
        border = np.concatenate([label[0], label[-1], label[:, 0], label[:, -1]])
        on_border = _values_present(border, sorted(present))
        todo = [c for c in dict.fromkeys(classes) if c in present]

        def one(c: int) -> tuple[int, int]:
            return _count_class(np.equal(label, c).view(np.uint8), c in on_border)

        if SEGMENT_THREADS > 1 and len(todo) > 1 and label.size >= _PARALLEL_MIN_PIXELS:
            results = list(_executor().map(one, todo))
        else:
            results = [one(c) for c in todo]
        for c, (n, e) in zip(todo, results):
            segments[str(c)], edge_segments[str(c)] = n, e
    return {"segments": segments, "edge_segments": edge_segments, "total": int(sum(segments.values()))}


def class_pixel_counts(label: np.ndarray) -> dict[str, int]:
    """Pixels per value ``{"0": n, "1": n, ..., "8": n}`` of a label raster (``"0"`` = unlabelled).

    Policy: a value outside 0..8 is an error (``ValueError``), never silently dropped, so the per-class
    totals of a release always add up to its pixel count.
    """
    label = _check_label(label)
    flat = label.ravel()
    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi > NUM_CLASSES:
            raise ValueError(f"label values must be in 0..{NUM_CLASSES}, found {lo}..{hi}")
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=NUM_CLASSES + 1)
    else:
        counts = np.zeros(NUM_CLASSES + 1, dtype=np.int64)
    return {str(v): int(counts[v]) for v in range(NUM_CLASSES + 1)}
