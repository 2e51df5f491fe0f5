import json

import numpy as np
import pytest
from skimage.draw import polygon as fill_polygon

from napari_unet import InputError, label_contours, write_contours


def test_polygons_trace_each_object():
    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:20] = 3
    labels[25:35, 30:45] = 8
    contours = label_contours(labels)
    assert sorted(c.label for c in contours) == [3, 8]
    for c in contours:
        rr, cc = fill_polygon(c.coords[:, 0], c.coords[:, 1], labels.shape)
        refilled = np.zeros(labels.shape, bool)
        refilled[rr, cc] = True
        obj = labels == c.label
        assert (refilled & obj).sum() / (refilled | obj).sum() > 0.8


def test_stack_coordinates_for_napari():
    stack = np.zeros((3, 20, 20), np.uint8)
    stack[2, 5:10, 5:10] = 1
    (c,) = label_contours(stack)
    assert c.index == (2,)
    coords = c.napari_coords()
    assert coords.shape[1] == 3 and np.all(coords[:, 0] == 2)


def test_export_csv_and_geojson(tmp_path):
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 3:9] = 1
    contours = label_contours(labels)
    write_contours(contours, tmp_path / "c.csv")
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "label,plane,vertex,y,x" and len(lines) > 4
    write_contours(contours, tmp_path / "c.geojson")
    gj = json.loads((tmp_path / "c.geojson").read_text())
    ring = gj["features"][0]["geometry"]["coordinates"][0]
    assert gj["type"] == "FeatureCollection" and ring[0] == ring[-1]
    xs = [p[0] for p in ring]
    assert min(xs) >= 2 and max(xs) <= 9  # x is the column
    with pytest.raises(InputError, match="csv or .geojson"):
        write_contours(contours, tmp_path / "c.txt")


class _Broken:
    """A contour whose vertices fail to come: a crash in the middle of writing."""

    label, index = 2, ()

    @property
    def coords(self):
        raise RuntimeError("disk full")


@pytest.mark.parametrize("name", ["c.csv", "c.geojson"])
def test_contours_are_written_atomically(tmp_path, name):
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 3:9] = 1
    path = tmp_path / name
    path.write_text("earlier export")
    with pytest.raises(RuntimeError, match="disk full"):
        write_contours([*label_contours(labels), _Broken()], path)
    assert path.read_text() == "earlier export"  # not half a file
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    write_contours(label_contours(labels), path)
    assert path.read_text() != "earlier export"
