"""The Predict dock's job: segment images plane by plane into label arrays the dock shows as they fill.

No Qt and no layers: the job gets arrays and writes into output arrays made by the caller, yielding
``jobs.events`` (``ImageStarted``, ``PlaneDone``, ``ImageDone``) so the GUI refreshes only what changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .events import ImageDone, ImageStarted, PlaneDone, UncertaintyDone

MAX_SHAPES = 3000  # more polygons than this make a napari Shapes layer sluggish: export them instead
POLYGON_TOLERANCE = 0.7  # pixels: polygons simplified this much draw ~10x faster in napari


@dataclass
class ImageJob:
    """One image to segment: its array, channel axis, and the label array the job fills plane by plane."""

    name: str
    image: object
    channel_axis: int | None
    out: np.ndarray
    n_planes: int
    unsure: np.ndarray | None = None  # the per-pixel uncertainty the job fills after the labels, when asked


def image_job(
    model, name: str, image, channel_axis: int | None, instances: bool, uncertainty: bool = False
) -> ImageJob:
    """The job of one image, with its (zeroed) output array (and uncertainty array when asked); an early, clear
    error for a wrong channel count (the core checks it again per plane)."""
    from ..prediction import output_shape

    shape = output_shape(model, image, channel_axis)
    n_planes = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    job = ImageJob(name, image, channel_axis, np.zeros(shape, np.int32 if instances else np.uint8), n_planes)
    if uncertainty:
        job.unsure = np.zeros(shape, np.float32)
    channels = image.shape[-1] if channel_axis == -1 else 1
    if channels != model.in_channels:
        raise InputError(
            f"'{name}' has {channels} channel(s) but the model was trained on {model.in_channels}: "
            "choose images like the training images."
        )
    return job


def display_polygons(labels: np.ndarray) -> list:
    """One simplified polygon (plane index + vertices, napari's order) per object; ``[None] * n`` when there
    are more than ``MAX_SHAPES``, too many to show (the dock says so)."""
    from skimage.measure import approximate_polygon

    from ..contours import Contour, label_contours

    contours = label_contours(labels)
    if len(contours) > MAX_SHAPES:
        return [None] * len(contours)
    return [
        Contour(ct.label, ct.index, approximate_polygon(ct.coords, POLYGON_TOLERANCE)).napari_coords()
        for ct in contours
    ]


def predict_job(
    model, jobs: Sequence[ImageJob], instances: bool, polygons: bool, stitch_threshold: float = 0.0, tta: bool = False
) -> Iterator:
    """Fill each job's ``out`` plane by plane (core ``iter_predict``), yielding progress; no Qt, no layers.

    ``out`` arrays are created on the GUI thread and shown by the new Labels layers; only this job writes
    them, and the GUI refreshes the layers when it hears of a finished plane. A job with an ``unsure`` array
    then gets its uncertainty map (``uncertainty.iter_uncertainty``), announced by ``UncertaintyDone``. ``tta``:
    probabilities averaged over flips and quarter turns (``prediction.tta_proba``).
    """
    from ..metrics import count_objects
    from ..prediction import iter_predict
    from ..uncertainty import iter_uncertainty

    for k, job in enumerate(jobs):
        yield ImageStarted(k)
        planes = iter_predict(
            model,
            job.image,
            channel_axis=job.channel_axis,
            instances=instances,
            stitch_threshold=stitch_threshold if instances else 0.0,
            tta=tta,
        )
        for n, (idx, labels) in enumerate(planes, start=1):
            job.out[idx] = labels
            yield PlaneDone(k, n, job.n_planes, tuple(int(i) for i in idx))
        yield ImageDone(k, display_polygons(job.out) if polygons else [], count_objects(job.out))
        if job.unsure is not None:
            maps = iter_uncertainty(model, job.image, channel_axis=job.channel_axis)
            for n, (idx, _, unsure) in enumerate(maps, start=1):
                job.unsure[idx] = unsure
                yield UncertaintyDone(k, n, job.n_planes)
