"""The inputs of a Train run, read from the dock's layers: the label mode, the checked (image, labels) pairs,
and the copies the session trains on (it never sees the live layers)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..labels import MASKS_SHORT, PAINT_FIRST, SCRIBBLES_SHORT
from ..volume import anisotropy_from_scale
from . import _common as c
from ._corrections import is_correction, reviewed_of, training_labels

if TYPE_CHECKING:
    from ..training.config import TrainConfig


def run_mode(mode: str | None, pairs: list[tuple]) -> str:
    """The run's label mode ('Labels are'); corrections carry their own, so with only them it is 'dense'."""
    if mode is None and pairs and all(is_correction(lab) for _, lab in pairs):
        return "dense"
    if mode is None:
        raise InputError(
            f"Choose what the labels are in 'Labels are': scribbles ({SCRIBBLES_SHORT}) or complete masks "
            f"({MASKS_SHORT})."
        )
    return mode


def checked_pairs(pairs: list[tuple]) -> list[tuple]:
    """The pairs to train on; ``InputError`` when they cannot be trained on."""
    if not pairs:
        raise InputError(
            "No annotations chosen: tick an image and pick its Labels layer, or click 'New scribble layer' "
            f"and {PAINT_FIRST}."
        )
    for image, labels in pairs:
        if tuple(labels.data.shape) != c.layer_spatial_shape(image):
            raise InputError(
                f"'{labels.name}' has shape {tuple(labels.data.shape)} but '{image.name}' has "
                f"{c.layer_spatial_shape(image)}: annotations must cover the image pixel for pixel."
            )
        if is_correction(labels):
            if not reviewed_of(labels).any():
                raise InputError(
                    f"Nothing in '{labels.name}' is reviewed yet: fix some objects, or click 'Mark plane reviewed' "
                    "(Predict dock) for a plane that is right as it is. Unreviewed pixels do not train."
                )
        elif not np.any(labels.data):
            raise InputError(f"Nothing is annotated in '{labels.name}': {PAINT_FIRST} first.")
    return pairs


def session_inputs(pairs: list[tuple], config: TrainConfig) -> tuple[list, list[np.ndarray], list[bool], TrainConfig]:
    """The session's images (not copied), copies of the annotations (it never sees the live layers; a correction
    layer as a dense ``Annotation`` of what was reviewed), which images are RGB, and the config with their
    channel axis."""
    rgb = [bool(getattr(img, "rgb", False)) for img, _ in pairs]
    if any(rgb):
        if not all(rgb):
            raise InputError("Train on RGB images or on single-channel images, not both at once.")
        config = dataclasses.replace(config, channel_axis=-1)
    images = [c.layer_array(img) for img, _ in pairs]
    labels = [training_labels(lab) for _, lab in pairs]
    if config.volume and config.anisotropy is None:  # a volume's Z / XY spacing from the layer's scale
        config = dataclasses.replace(config, anisotropy=anisotropy_from_scale(getattr(pairs[0][0], "scale", None)))
    return images, labels, rgb, config
