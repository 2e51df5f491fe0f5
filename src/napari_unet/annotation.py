"""One image's annotation with its own label mode: scribbles on one image, corrected masks on another.

A training run takes, per image, either a plain label array (read in the run's ``mode``) or an ``Annotation``
that says how to read it. A corrected prediction is a dense ``Annotation`` whose ``reviewed`` mask marks the
pixels the user has looked at and fixed: only those count as complete masks, the rest is not annotated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

MODES = ("auto", "sparse", "dense")


@dataclass
class Annotation:
    """``labels`` of one image read as ``mode`` ('sparse' scribbles, 'dense' complete masks, or 'auto': the run's
    mode, else the guess from this pair alone); ``reviewed`` (bool, the labels' shape; dense only): the pixels
    that count, the others are ignored by the loss. None: every pixel of a painted plane counts."""

    labels: np.ndarray
    mode: str = "auto"
    reviewed: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"Annotation mode must be 'auto', 'sparse' or 'dense', got {self.mode!r}.")
        if self.reviewed is None:
            return
        reviewed = np.asarray(self.reviewed)
        if reviewed.shape != np.shape(self.labels):
            raise InputError(
                f"The reviewed mask has shape {reviewed.shape} but the labels have shape {np.shape(self.labels)}: "
                "give one True/False value per label pixel (True = checked by a person)."
            )
        if self.mode == "sparse":
            raise InputError(
                "A reviewed mask belongs to complete masks (mode 'dense'): scribbles already mark what is "
                "annotated (0 = not annotated)."
            )
        self.reviewed = reviewed.astype(bool, copy=False)


def as_annotation(entry) -> Annotation:
    """An ``Annotation`` as it is, a plain label array as an ``Annotation`` in the run's mode."""
    return entry if isinstance(entry, Annotation) else Annotation(np.asarray(entry) if entry is not None else entry)
