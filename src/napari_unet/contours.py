"""Label images to polygons (one per object and plane) for napari Shapes layers, CSV and GeoJSON."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.measure import find_contours, regionprops


@dataclass(frozen=True)
class Contour:
    """The outline of one object in one 2D plane; ``coords`` are (row, col) vertices, closed."""

    label: int
    index: tuple[int, ...]  # the plane's leading index in a stack, () for a 2D image
    coords: np.ndarray

    def napari_coords(self) -> np.ndarray:
        """Vertices with the plane index prepended, as a napari Shapes layer over the stack expects."""
        lead = np.broadcast_to(np.asarray(self.index, float), (len(self.coords), len(self.index)))
        return np.hstack([lead, self.coords])


def label_contours(labels: np.ndarray) -> list[Contour]:
    """Outer contour of every object of a 2D label image or of every plane of a stack."""
    labels = np.asarray(labels)
    out: list[Contour] = []
    for idx in np.ndindex(*labels.shape[:-2]):
        plane = labels[idx]
        for region in regionprops(plane.astype(np.int64, copy=False)):
            r0, c0, r1, c1 = region.bbox
            padded = np.pad(region.image, 1).astype(np.float32)
            rings = find_contours(padded, 0.5)
            if not rings:
                continue
            ring = max(rings, key=len) + np.array([r0 - 1, c0 - 1])
            out.append(Contour(int(region.label), tuple(int(i) for i in idx), ring))
    return out


def write_csv(contours: list[Contour], path: str | Path) -> None:
    """One row per vertex: label, plane index, vertex number, y, x."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "plane", "vertex", "y", "x"])
        for c in contours:
            plane = ",".join(map(str, c.index))
            for k, (y, x) in enumerate(c.coords):
                writer.writerow([c.label, plane, k, f"{y:.2f}", f"{x:.2f}"])


def write_geojson(contours: list[Contour], path: str | Path) -> None:
    """A GeoJSON FeatureCollection of polygons in pixel coordinates (x to the right, y down), as QuPath reads."""
    features = []
    for c in contours:
        ring = [[round(float(x), 2), round(float(y), 2)] for y, x in c.coords]
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"label": c.label, "plane": list(c.index)},
            }
        )
    Path(path).write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def write_contours(contours: list[Contour], path: str | Path) -> None:
    """CSV or GeoJSON, by the file's extension; written atomically, so a crash never leaves half a file."""
    from .io import atomic_path

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        write = write_csv
    elif suffix in (".geojson", ".json"):
        write = write_geojson
    else:
        from .errors import InputError

        raise InputError(f"Contours are written as .csv or .geojson, not {suffix or 'a file without extension'}.")
    with atomic_path(path, overwrite=True) as tmp:  # callers (CLI, widget dialog) decide about replacing
        write(contours, tmp)
