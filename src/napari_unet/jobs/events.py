"""Events of the prediction and scoring jobs: what a dock hears from its worker thread.

Plain frozen values (indices, counts, arrays of vertices, score rows), so a dock can route them to the GUI
thread and a script can read them without Qt. Training has its own vocabulary in ``training.events``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageStarted:
    """The job begins image ``index`` (of the jobs it was given)."""

    index: int


@dataclass(frozen=True)
class PlaneDone:
    """A plane of image ``index`` is written into its output array."""

    index: int  # which image
    plane: int  # planes done in this image
    n_planes: int
    where: tuple = ()  # leading (Z/T) index of the plane just written


@dataclass(frozen=True)
class ImageDone:
    """Image ``index`` is complete: its polygons to display and its object count."""

    index: int
    polygons: list = field(default_factory=list)  # simplified (plane index + vertices) arrays, for display
    n_objects: int | None = None  # objects in the labels (ids, or connected pieces of a semantic mask)


@dataclass(frozen=True)
class UncertaintyDone:
    """A plane of image ``index``'s uncertainty map is written into its array (``ImageJob.unsure``)."""

    index: int
    plane: int  # planes done
    n_planes: int


@dataclass(frozen=True)
class Scored:
    """The score rows of every (prediction, truth) pair, and the mean rows of the table.

    Each of ``rows`` says which pair it scores under ``jobs.score.PAIR``; ``as_foreground`` lists the pairs
    that 'Per class' scored as foreground vs background, because they hold one id per object.
    """

    rows: list[dict]
    means: list[dict]
    as_foreground: tuple[int, ...] = ()
