"""Images and annotations in, training samples out: computed once per set of annotations.

Preparation checks every input (shapes, dtypes, channels, memory), decides how the labels are read (the label
mode, whether object boundaries are learnt, the typical object size) and turns every annotated plane into a
normalized ``Sample``. The result is a plain ``TrainingData`` that a ``Trainer`` (or several rounds of one
session) trains on; nothing here needs the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..annotation import Annotation, as_annotation
from ..errors import InputError
from ..images import check_fits, check_image, guess_channel_axis, iter_slices, spatial_shape
from ..labels import IGNORE, count_classes, integer_labels, is_instance_labels, labels_to_target, resolve_label_mode
from ..meta import learns_boundaries, normalization_rule
from ..meta import object_size as model_object_size
from ..normalization import DEFAULT_NORMALIZATION, normalize
from .config import TrainConfig
from .patches import Sample


@dataclass
class TrainingData:
    """What a training run learns from, and what the model file records about it."""

    samples: list[Sample]  # one per annotated plane
    sample_keys: list[tuple[int, tuple[int, ...]]]  # (image, plane index) of each sample
    mode: str  # 'sparse' or 'dense'
    boundaries: bool  # the boundary target (background / interior / boundary) is learnt: instance masks
    object_size: float | None  # typical object diameter in pixels
    normalization: dict
    n_classes: int
    in_channels: int
    class_counts: np.ndarray  # annotated pixels per class id
    channel_axes: list[int | None] = field(default_factory=list)
    planes_used: int = 0  # planes with annotations / all planes
    planes_total: int = 0
    data_shapes: list[list[int]] = field(default_factory=list)
    pair_modes: list[str] = field(default_factory=list)  # how each image's labels were read: 'sparse' or 'dense'

    @property
    def n_annotated(self) -> int:
        return int(self.class_counts.sum())


def as_list(x) -> list:
    """One image (array) or several (list/tuple) as a list."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def checked_pairs(images, labels, what: str) -> tuple[list, list]:
    """The images (checked) and label images as lists of one pair each; ``what``: 'image' or 'Z-stack'."""
    images, labels = as_list(images), as_list(labels)
    if not images:
        raise InputError(f"No images given: give at least one {what} and its labels.")
    if len(images) != len(labels):
        raise InputError(f"{len(images)} images but {len(labels)} label images: give one label image per image.")
    return [check_image(img, f"Image {k}") for k, img in enumerate(images)], labels


def prepare_data(images, labels, cfg: TrainConfig, model=None) -> TrainingData:
    """Check the inputs and build the samples; ``model``: the model to fine-tune (its channels, classes,
    normalization and object kind are kept). A label entry is an array (read in ``cfg.mode``) or an
    ``Annotation`` with its own mode and reviewed mask. Every mistake is an ``InputError`` that says what to do."""
    images, labels = checked_pairs(images, labels, "image")
    # labels are converted whole and annotated planes kept as float32: check that fits before reading
    pixels = sum(math.prod(np.shape(lab)) for lab in labels)
    largest = max(math.prod(img.shape) for img in images)
    check_fits(
        12 * pixels + 12 * largest,
        "Training on these images",
        "crop them to the annotated region, or train on fewer or smaller images.",
    )
    entries = [as_annotation(lab) for lab in labels]
    label_arrays = [np.asarray(e.labels) for e in entries]
    for k, lab in enumerate(label_arrays):
        integer_labels(lab, f"labels of image {k}")  # dtype and values, before guessing the mode
    modes = pair_modes(labels, label_arrays, cfg)
    mode = "sparse" if "sparse" in modes else "dense"  # scribbles anywhere: pseudo-labels, class balance
    dense_arrays = [lab for lab, m in zip(label_arrays, modes, strict=True) if m == "dense"]
    boundaries = learn_boundaries(cfg, "dense" if dense_arrays else "sparse", dense_arrays, model)
    sizes = [typical_object_size(m, boundaries, [lab], None) for lab, m in zip(label_arrays, modes, strict=True)]
    found = [s for s in sizes if s]
    data = TrainingData(
        samples=[],
        sample_keys=[],
        mode=mode,
        boundaries=boundaries,
        object_size=float(np.median(found)) if found else (model_object_size(model) if model is not None else None),
        normalization=dict((normalization_rule(model) if model else None) or DEFAULT_NORMALIZATION),
        n_classes=0,
        in_channels=model.in_channels if model is not None else 0,
        class_counts=np.zeros(0, np.int64),
        data_shapes=[list(np.shape(i)) for i in images],
        pair_modes=modes,
    )
    pairs = enumerate(zip(images, label_arrays, entries, strict=True))
    n_lost = sum(_add_image(data, k, img, lab, cfg, e.reviewed) for k, (img, lab, e) in pairs)
    try:
        n_classes, counts = count_classes([s.target for s in data.samples])
    except InputError as e:
        if n_lost:
            raise InputError(f"{e} ({n_lost} annotated pixels are NaN or inf in the image and were ignored.)") from e
        raise
    data.class_counts = counts[: n_classes + 1]
    if model is not None:
        if model.in_channels != data.in_channels:
            raise InputError(f"The model takes {model.in_channels} channels but the images have {data.in_channels}.")
        if n_classes > model.n_classes:
            raise InputError(
                f"The annotations have {n_classes} classes but the model predicts {model.n_classes}: "
                "train a new model for more classes."
            )
        n_classes = model.n_classes
    data.n_classes = n_classes
    return data


def _check_label_shape(k: int, lab: np.ndarray, sp: tuple[int, ...]) -> None:
    if lab.shape[:-1] == sp and lab.shape[-1] in (3, 4):
        raise InputError(
            f"The labels of image {k} have shape {lab.shape}: an RGB(A) picture of labels, not label "
            "ids. Give one integer label image of the image's height and width (e.g. a napari Labels layer)."
        )
    if lab.shape != sp:
        raise InputError(
            f"Image {k} has spatial shape {sp} but its labels have shape {lab.shape}: "
            "the labels must cover the image pixel for pixel."
        )


def pair_modes(labels, arrays: list[np.ndarray], cfg: TrainConfig) -> list[str]:
    """How each image's labels are read: an ``Annotation``'s own mode; plain arrays (and 'auto' annotations)
    in the run's mode, else guessed (plain arrays together, as before, an 'auto' annotation alone)."""
    plain = [a for entry, a in zip(labels, arrays, strict=True) if not isinstance(entry, Annotation)]
    shared = resolve_label_mode(plain, cfg.mode, cfg.multiclass) if plain else None
    modes = []
    for entry, lab in zip(labels, arrays, strict=True):
        if not isinstance(entry, Annotation):
            modes.append(shared)
        elif entry.mode != "auto":
            modes.append("dense" if cfg.multiclass else entry.mode)
        else:
            modes.append(resolve_label_mode([lab], cfg.mode, cfg.multiclass))
    return modes


def _pair_target(data: TrainingData, k: int, lab: np.ndarray, cfg: TrainConfig, reviewed) -> np.ndarray:
    """Image ``k``'s target in its own mode; a boundary model reads scribbled foreground as object interior,
    and pixels a corrected mask leaves unreviewed are ignored."""
    mode = data.pair_modes[k]
    if data.boundaries and mode == "dense":
        from ..instances import boundary_target

        target = boundary_target(lab)
    else:
        target = labels_to_target(lab, mode, cfg.multiclass)
        if data.boundaries and target.max(initial=0) > 1:
            raise InputError(
                f"The scribbles of image {k} use more than one foreground class, but the model learns object "
                "boundaries (one kind of object): paint 1 = background and 2 = objects only."
            )
    if reviewed is not None:
        target = np.where(reviewed, target, np.int16(IGNORE)).astype(np.int16)
    return target


def _add_image(data: TrainingData, k: int, img, lab: np.ndarray, cfg: TrainConfig, reviewed=None) -> int:
    """Add the annotated planes of image ``k`` to ``data``; returns the annotated pixels lost to NaN/inf pixels.

    In dense mode a plane with no label at all is unpainted, not "all background" (complete masks on 1 plane
    of a stack must not make the 19 others background), unless its pixels are marked reviewed."""
    shape = tuple(np.shape(img))
    known = data.in_channels or None
    axis = guess_channel_axis(shape, known) if cfg.channel_axis == "auto" else cfg.channel_axis
    _check_label_shape(k, lab, spatial_shape(shape, axis))
    target = _pair_target(data, k, lab, cfg, reviewed)
    check_finite = np.dtype(img.dtype).kind == "f"
    any_finite = not check_finite
    lost = 0
    for idx, plane in iter_slices(img, axis):
        if not data.in_channels:
            data.in_channels = plane.shape[0]
        elif plane.shape[0] != data.in_channels:
            raise InputError(
                f"Image {k} has {plane.shape[0]} channels but the others (or the model) have "
                f"{data.in_channels}: train one model per channel count."
            )
        t = target[idx]
        data.planes_total += 1
        if check_finite:  # NaN/inf pixels carry no information: their annotations are ignored
            bad = ~np.isfinite(plane).all(axis=0)
            any_finite = any_finite or not bad.all()
            if bad.any():
                lost += int(np.count_nonzero(t[bad] >= 0))
                t = np.where(bad, np.int16(IGNORE), t)
        painted = np.any(lab[idx]) if reviewed is None else np.any(reviewed[idx])
        if data.pair_modes[k] == "dense" and not painted:
            continue
        if np.any(t >= 0):
            data.planes_used += 1
            data.samples.append(Sample(normalize(plane, data.normalization), np.ascontiguousarray(t)))
            data.sample_keys.append((k, tuple(idx)))
    if not any_finite:
        raise InputError(f"Image {k} has no finite pixel value (all NaN or inf): check the file or how it was made.")
    data.channel_axes.append(axis)
    return lost


def learn_boundaries(cfg: TrainConfig, mode: str, labels: list[np.ndarray], model=None) -> bool:
    """Whether to train the boundary target (see ``TrainConfig.instances``)."""
    possible = mode == "dense" and not cfg.multiclass
    if model is not None and learns_boundaries(model) and not cfg.multiclass and cfg.instances is not False:
        return True  # a boundary model stays one, also when corrected with scribbles
    if cfg.instances:
        if not possible:
            raise InputError(
                "instances=True learns object boundaries from complete instance masks: use dense labels "
                "(one id per object) with multiclass off."
            )
        return True
    if cfg.instances is False or not possible:
        return False
    if model is not None:  # fine-tuning keeps what the model predicts
        if not learns_boundaries(model) and any(is_instance_labels(lab) for lab in labels):
            import warnings

            warnings.warn(
                "The model being continued predicts one foreground class, so these instance masks train its "
                "foreground (objects are then split by a distance watershed); to learn object boundaries from "
                "them, train a new model (without --from / model=).",
                UserWarning,
                stacklevel=4,
            )
        return learns_boundaries(model)
    return any(is_instance_labels(lab) for lab in labels)


def typical_object_size(mode: str, boundaries: bool, labels: list[np.ndarray], model=None) -> float | None:
    """Typical object diameter from scribbles or instance masks (see instances.py); a fine-tuned model keeps
    its own otherwise."""
    from ..instances import object_size_from_masks, object_size_from_strokes

    size = None
    if mode == "sparse" or boundaries:
        measure = object_size_from_strokes if mode == "sparse" else object_size_from_masks
        found = [s for s in (measure(lab) for lab in labels) if s]
        size = float(np.median(found)) if found else None
    if size is None and model is not None:
        size = model_object_size(model)
    return size
