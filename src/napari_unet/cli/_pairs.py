"""Label files with their own mode: ``--labels a.tif:sparse b.tif:dense`` and ``--reviewed - b_reviewed.tif``.

A label file may end in ``:sparse`` (scribbles), ``:dense`` (complete masks) or ``:auto`` (the run's mode,
``--sparse``/``--dense``, else the guess): training then mixes scribbles on some images and corrected masks
on others. ``--reviewed`` gives, per label file, a mask of the pixels a person checked (non-zero = reviewed;
``-`` = none): only those count as complete masks, the rest is not annotated.
"""

from __future__ import annotations

from ..errors import InputError

PAIR_MODES = ("sparse", "dense", "auto")
LABELS_HELP = (
    "one label image per image, same order; a file may end in :sparse (scribbles), :dense (complete masks) or "
    ":auto to give that image its own mode, e.g. --labels a_scribbles.tif:sparse b_corrected.tif:dense"
)
REVIEWED_HELP = (
    "per label file, a mask of the pixels a person reviewed (non-zero), '-' for none: for corrected masks "
    "(dense), only reviewed pixels train, the rest is not annotated"
)


def split_mode(entry: str) -> tuple[str, str | None]:
    """``path:mode`` as (path, mode); a path without a known mode suffix (or a Windows drive) as (path, None)."""
    path, sep, mode = entry.rpartition(":")
    if sep and mode in PAIR_MODES and path:
        return path, mode
    return entry, None


def label_paths(entries: list[str]) -> list[str]:
    """The files of ``--labels`` without their mode suffixes."""
    return [split_mode(e)[0] for e in entries]


def reviewed_paths(reviewed: list[str] | None, n_labels: int) -> list[str | None]:
    """``--reviewed`` as one path or None per label file."""
    if not reviewed:
        return [None] * n_labels
    if len(reviewed) != n_labels:
        raise InputError(
            f"{len(reviewed)} --reviewed entries for {n_labels} label files: give one per label file ('-' for none)."
        )
    return [None if r == "-" else r for r in reviewed]


def read_label_entries(entries: list[str], reviewed: list[str] | None) -> list:
    """The label arrays, as ``Annotation`` where a file has its own mode or a reviewed mask."""
    import numpy as np

    from ..annotation import Annotation
    from ..io import read_image

    out = []
    for entry, mask in zip(entries, reviewed_paths(reviewed, len(entries)), strict=True):
        path, mode = split_mode(entry)
        labels = np.asarray(read_image(path))
        if mode is None and mask is None:
            out.append(labels)
            continue
        marked = np.asarray(read_image(mask)) != 0 if mask is not None else None
        if marked is not None and mode is None:
            mode = "dense"  # a reviewed mask belongs to complete masks
        out.append(Annotation(labels, mode or "auto", marked))
    return out
