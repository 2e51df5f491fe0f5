"""Volumes in, training samples out: one (C, Z, Y, X) sample per Z-stack, learnt from its painted voxels only.

Complete masks count on the planes that are painted (an unpainted plane is not "all background"); scribbles
count wherever they are. Instance masks give the 3D boundary target (``volume.boundary_target_volume``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..images import check_fits, guess_channel_axis
from ..labels import IGNORE, count_classes, integer_labels, labels_to_target, resolve_label_mode
from ..meta import normalization_rule
from ..normalization import DEFAULT_NORMALIZATION
from ..volume import boundary_target_volume, check_volume_shape, normalize_volume, read_volume
from .config import TrainConfig
from .dataset import TrainingData, checked_pairs, learn_boundaries, typical_object_size
from .patches import Sample


def prepare_volume_data(images, labels, cfg: TrainConfig, model=None) -> TrainingData:
    """Check the volumes and their labels and build one normalized sample per volume (see ``dataset``)."""
    images, labels = checked_pairs(images, labels, "Z-stack")
    check_fits(
        sum(20 * math.prod(np.shape(i)) for i in images),
        "Training on these volumes",
        "crop them to the annotated region, or train on fewer or smaller volumes.",
    )
    label_arrays = [np.asarray(lab) for lab in labels]
    for k, lab in enumerate(label_arrays):
        integer_labels(lab, f"labels of image {k}")
    mode = resolve_label_mode(label_arrays, cfg.mode, cfg.multiclass)
    boundaries = learn_boundaries(cfg, mode, label_arrays, model)
    data = TrainingData(
        samples=[],
        sample_keys=[],
        mode=mode,
        boundaries=boundaries,
        object_size=typical_object_size(mode, boundaries, label_arrays, model),
        normalization=dict((normalization_rule(model) if model else None) or DEFAULT_NORMALIZATION),
        n_classes=0,
        in_channels=model.in_channels if model is not None else 0,
        class_counts=np.zeros(0, np.int64),
        data_shapes=[list(np.shape(i)) for i in images],
    )
    for k, (img, lab) in enumerate(zip(images, label_arrays, strict=True)):
        _add_volume(data, k, img, lab, cfg)
    n_classes, counts = count_classes([s.target for s in data.samples])
    data.class_counts = counts[: n_classes + 1]
    if model is not None:
        if model.in_channels != data.in_channels:
            raise InputError(f"The model takes {model.in_channels} channels but the images have {data.in_channels}.")
        n_classes = max(n_classes, model.n_classes)
    data.n_classes = n_classes
    return data


def volume_target(lab: np.ndarray, mode: str, boundaries: bool, multiclass: bool) -> tuple[np.ndarray, np.ndarray]:
    """The int16 target of one (Z, Y, X) label volume and which planes are painted (dense: any label on them)."""
    if mode == "sparse":
        target = labels_to_target(lab, mode)
        return target, (target >= 0).any(axis=(1, 2))
    painted = lab.reshape(len(lab), -1).any(axis=1)
    if boundaries:
        return boundary_target_volume(lab, painted), painted
    target = labels_to_target(lab, mode, multiclass)
    target[~painted] = IGNORE
    return target, painted


def _add_volume(data: TrainingData, k: int, img, lab: np.ndarray, cfg: TrainConfig) -> None:
    shape = tuple(np.shape(img))
    axis = guess_channel_axis(shape, data.in_channels or None) if cfg.channel_axis == "auto" else cfg.channel_axis
    sp = check_volume_shape(shape, axis, f"Image {k}")
    if lab.shape != sp:
        raise InputError(
            f"Image {k} has spatial shape {sp} but its labels have shape {lab.shape}: "
            "the labels must cover the volume voxel for voxel."
        )
    volume = read_volume(img, axis)
    if not data.in_channels:
        data.in_channels = volume.shape[0]
    elif volume.shape[0] != data.in_channels:
        raise InputError(
            f"Image {k} has {volume.shape[0]} channels but the others (or the model) have {data.in_channels}: "
            "train one model per channel count."
        )
    target, painted = volume_target(lab, data.mode, data.boundaries, cfg.multiclass)
    bad = ~np.isfinite(volume).all(axis=0)
    if bad.all():
        raise InputError(f"Image {k} has no finite voxel value (all NaN or inf): check the file or how it was made.")
    target[bad] = IGNORE  # NaN/inf voxels carry no information
    data.planes_total += len(lab)
    data.planes_used += int(painted.sum())
    data.channel_axes.append(axis)
    if np.any(target >= 0):
        data.samples.append(Sample(normalize_volume(volume, data.normalization), np.ascontiguousarray(target)))
        data.sample_keys.append((k, ()))
