"""Segment counting (pipeline/labels/segments.py): hand-built rasters with known counts, a property test against
cv2.connectedComponents, and the real Palu label."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.labels.segments import class_pixel_counts, count_segments
from tests.conftest import shared_file

KEYS = [str(c) for c in range(1, 9)]


def only(result: dict, **per_class: int) -> dict[str, int]:
    """Expected per-class dict: all classes 0 except those given as c<id>=n."""
    expected = {k: 0 for k in KEYS}
    for name, n in per_class.items():
        expected[name[1:]] = n
    return expected


def reference(label: np.ndarray, classes=range(1, 9)) -> tuple[dict, dict]:
    """Segments and edge segments per class from cv2.connectedComponents (8-connectivity)."""
    segments, edges = {}, {}
    for c in classes:
        mask = (label == c).astype(np.uint8)
        if mask.size == 0:
            segments[str(c)], edges[str(c)] = 0, 0
            continue
        n, lab = cv2.connectedComponents(mask, connectivity=8)
        border = np.concatenate([lab[0, :], lab[-1, :], lab[:, 0], lab[:, -1]])
        segments[str(c)] = n - 1
        edges[str(c)] = int(np.unique(border[border > 0]).size)
    return segments, edges


def test_nested_ring_with_blob_of_same_class_is_two_segments():
    label = np.zeros((11, 11), np.uint8)
    label[2:9, 2:9] = 1
    label[3:8, 3:8] = 0  # the ring's hole
    label[5, 5] = 1  # a blob inside the hole, not connected to the ring
    r = count_segments(label)
    assert r["segments"] == only(r, c1=2)
    assert r["edge_segments"] == only(r)
    assert r["total"] == 2


def test_ring_in_ring_in_ring():
    label = np.zeros((13, 13), np.uint8)
    for k in (0, 2, 4):  # three concentric rings of class 4, separated by background rings
        label[k:13 - k, k:13 - k] = 4
        label[k + 1:12 - k, k + 1:12 - k] = 0
    label[6, 6] = 4
    r = count_segments(label)
    assert r["segments"] == only(r, c4=4)
    assert r["edge_segments"] == only(r, c4=1)  # only the outermost ring touches the border


def test_ring_whose_hole_is_another_class():
    label = np.zeros((9, 9), np.uint8)
    label[1:8, 1:8] = 1
    label[3:6, 3:6] = 2
    r = count_segments(label)
    assert r["segments"] == only(r, c1=1, c2=1)
    assert r["total"] == 2
    assert r["edge_segments"] == only(r)


def test_holes_do_not_split_a_segment():
    label = np.full((8, 10), 5, np.uint8)
    label[2, 2] = 0
    label[4:6, 5:8] = 3
    label[1, 7] = 0
    r = count_segments(label)
    assert r["segments"] == only(r, c3=1, c5=1)
    assert r["edge_segments"] == only(r, c5=1)


@pytest.mark.parametrize(
    "label",
    [
        [[1, 0], [0, 1]],  # main diagonal
        [[0, 1], [1, 0]],  # anti-diagonal
        [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    ],
)
def test_corner_touch_is_one_segment(label):
    r = count_segments(np.array(label, np.uint8))
    assert r["segments"] == only(r, c1=1)


def test_checkerboard_of_two_classes():
    # each class touches itself only diagonally: one 8-connected segment per class
    label = np.indices((6, 6)).sum(axis=0) % 2 + 1
    r = count_segments(label.astype(np.uint8))
    assert r["segments"] == only(r, c1=1, c2=1)
    assert r["edge_segments"] == only(r, c1=1, c2=1)


def test_four_connected_gap_separates():
    label = np.array([[1, 0, 1], [1, 0, 1], [1, 0, 1]], np.uint8)
    r = count_segments(label)
    assert r["segments"] == only(r, c1=2)


def test_edges_and_corners():
    label = np.zeros((7, 7), np.uint8)
    label[0, 3] = 1  # top edge
    label[3, 0] = 2  # left edge
    label[6, 3] = 3  # bottom edge
    label[3, 6] = 4  # right edge
    label[0, 0] = 5  # corners
    label[6, 6] = 5
    label[0, 6] = 6
    label[6, 0] = 6
    label[3, 3] = 7  # interior
    label[2, 2] = 8  # interior
    r = count_segments(label)
    assert r["segments"] == only(r, c1=1, c2=1, c3=1, c4=1, c5=2, c6=2, c7=1, c8=1)
    assert r["edge_segments"] == only(r, c1=1, c2=1, c3=1, c4=1, c5=2, c6=2)
    assert r["total"] == 10


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
def test_only_components_on_the_border_are_edge_segments(side):
    # the class as a whole touches the border, one of its two components does not: the crop offset must
    # be applied correctly for every side
    label = np.zeros((9, 12), np.uint8)
    label[4, 5] = 3  # interior component
    where = {"top": (0, 8), "bottom": (8, 8), "left": (6, 0), "right": (2, 11)}[side]
    label[where] = 3
    label[3:6, 8:10] = 2  # an interior block, class bbox far from the border
    r = count_segments(label)
    assert r["segments"] == only(r, c2=1, c3=2)
    assert r["edge_segments"] == only(r, c3=1)


def test_single_pixels():
    r = count_segments(np.array([[3]], np.uint8))
    assert r["segments"] == only(r, c3=1)
    assert r["edge_segments"] == only(r, c3=1)
    label = np.zeros((5, 5), np.uint8)
    label[2, 2] = 8
    label[0, 2] = 8
    r = count_segments(label)
    assert r["segments"] == only(r, c8=2)
    assert r["edge_segments"] == only(r, c8=1)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (4, 4), (1, 1)])
def test_empty(shape):
    r = count_segments(np.zeros(shape, np.uint8))
    assert list(r["segments"]) == KEYS and list(r["edge_segments"]) == KEYS
    assert set(r["segments"].values()) == {0} and set(r["edge_segments"].values()) == {0}
    assert r["total"] == 0


def test_class_selection_and_dtypes():
    label = np.array([[0, 1, 1], [2, 0, 9], [2, 0, 9]])
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        r = count_segments(label.astype(dtype), classes=[2, 9])
        assert r == {"segments": {"2": 1, "9": 1}, "edge_segments": {"2": 1, "9": 1}, "total": 2}
    r = count_segments(label.astype(np.uint8))  # 9 is not a default class: it is background
    assert r["segments"] == only(r, c1=1, c2=1)


def test_rejects_non_2d_and_non_integer():
    with pytest.raises(ValueError):
        count_segments(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(TypeError):
        count_segments(np.zeros((2, 2), np.float32))


def test_matches_connected_components_on_random_rasters():
    rng = np.random.default_rng(20240607)
    shapes = [(1, 1), (1, 2), (2, 1), (1, 37), (41, 1), (2, 2), (3, 3)]
    shapes += [tuple(int(v) for v in rng.integers(1, 70, size=2)) for _ in range(193)]
    for i, shape in enumerate(shapes):
        ncls = int(rng.integers(1, 9))
        if i % 3 == 0:
            # blobby: a coarse random field upsampled, then speckled -> nested rings and holes
            coarse = rng.integers(0, ncls + 1, size=(shape[0] // 3 + 1, shape[1] // 3 + 1))
            label = np.kron(coarse, np.ones((3, 3), np.int64))[: shape[0], : shape[1]]
            speckle = rng.random(shape) < 0.15
            label[speckle] = rng.integers(0, ncls + 1, size=int(speckle.sum()))
        else:
            p = rng.dirichlet(np.ones(ncls + 1))
            label = rng.choice(ncls + 1, size=shape, p=p)
        label = label.astype(np.uint8)
        segments, edges = reference(label)
        r = count_segments(label)
        assert r["segments"] == segments, (i, shape)
        assert r["edge_segments"] == edges, (i, shape)
        assert r["total"] == sum(segments.values())


def test_class_pixel_counts():
    label = np.array([[0, 1, 8], [8, 8, 2]], np.uint8)
    assert class_pixel_counts(label) == {"0": 1, "1": 1, "2": 1, "3": 0, "4": 0, "5": 0, "6": 0, "7": 0, "8": 3}
    assert class_pixel_counts(np.zeros((0, 3), np.uint8)) == {str(v): 0 for v in range(9)}
    with pytest.raises(ValueError):
        class_pixel_counts(np.array([[9]], np.uint8))
    with pytest.raises(ValueError):
        class_pixel_counts(np.array([[-1]], np.int16))


def test_real_palu_label():
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(shared_file("openearthmap/palu_8_label.tif")) as src:
        label = src.read(1)
    assert label.shape == (1024, 1024)
    r = count_segments(label)
    assert r["total"] == 915
    assert {int(k) for k, n in r["segments"].items() if n} == {2, 3, 4, 5, 6, 8}
    segments, edges = reference(label)
    assert r["segments"] == segments
    assert r["edge_segments"] == edges
    pixels = class_pixel_counts(label)
    assert sum(pixels.values()) == 1024 * 1024
    assert {int(k) for k, n in pixels.items() if n} == {2, 3, 4, 5, 6, 8}
