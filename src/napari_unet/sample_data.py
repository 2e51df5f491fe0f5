"""The bundled real nuclei image (DSB2018, via StarDist, BSD-3) for napari's File > Open Sample and the demo."""

from __future__ import annotations

from importlib.resources import files

import numpy as np

from .labels import scribble_color_dict
from .layer_roles import ROLE_KEY, SCRIBBLES, TRUTH


def _read(name: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(files("napari_unet").joinpath("data", name))


def nuclei() -> np.ndarray:
    """512 x 512 uint16 fluorescence image of nuclei."""
    return _read("nuclei.tif")


def nuclei_labels() -> np.ndarray:
    """Instance ground truth of ``nuclei()``: 125 nuclei, 0 = background."""
    return _read("nuclei_labels.tif")


def nuclei_strokes(seed: int = 0) -> np.ndarray:
    """Scribbles on ``nuclei()``: 1 = background, 2 = nucleus, on about 0.2% of the pixels."""
    from .strokes import scribbles_from_truth

    return scribbles_from_truth(nuclei_labels(), seed=seed)


# opened as evaluation truth: the Train widget never takes it for training unless the user picks it
_TRUTH_KWARGS = {
    "name": "nuclei ground truth",
    "opacity": 0.4,
    "visible": False,
    "metadata": {ROLE_KEY: TRUTH},
}


def make_nuclei_sample() -> list[tuple]:
    """napari sample: the image and its ground truth."""
    return [
        (nuclei(), {"name": "nuclei"}, "image"),
        (nuclei_labels(), _TRUTH_KWARGS, "labels"),
    ]


def make_nuclei_strokes_sample() -> list[tuple]:
    """napari sample: the image with scribbles ready to train, and the ground truth to score against."""
    return [
        (nuclei(), {"name": "nuclei"}, "image"),
        (nuclei_labels(), _TRUTH_KWARGS, "labels"),
        (
            nuclei_strokes(),
            {
                "name": "nuclei strokes",
                # the plugin's palette, as in a 'New scribble layer' (not napari's random label colours)
                "colormap": scribble_color_dict(2),
                "metadata": {ROLE_KEY: SCRIBBLES},
            },
            "labels",
        ),
    ]
