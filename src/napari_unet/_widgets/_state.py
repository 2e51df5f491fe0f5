"""The model in memory, shared by the Train and Predict widgets of one viewer."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
    import napari

    from ..model import UNet


class ModelStore:
    """Holds the current model and a one-line description of it; ``changed`` fires when either changes."""

    changed = Signal()
    predicted = Signal()  # a prediction layer was completed (the Metrics widget recomputes)

    def __init__(self) -> None:
        self.model: UNet | None = None
        self.description = "no model yet: train one or load a model file"

    def set(self, model: UNet | None, description: str) -> None:
        self.model = model
        self.description = description
        self.changed.emit()


_stores: weakref.WeakKeyDictionary[Any, ModelStore] = weakref.WeakKeyDictionary()


def get_store(viewer: napari.Viewer) -> ModelStore:
    """The store of this viewer (created on first use, forgotten with the viewer)."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    store = _stores.get(viewer)
    if store is None:
        store = _stores[viewer] = ModelStore()
    return store


def describe_model(model: UNet, origin: str) -> str:
    """'trained 42 s · 2 classes · val Dice 0.87' style summary from ``model.meta``."""
    from ..meta import last_val_dice, learns_boundaries, total_seconds

    parts = [origin]
    seconds = total_seconds(model)
    if seconds:
        parts.append(f"{seconds:.0f} s of training")
    n = model.n_classes
    if learns_boundaries(model):
        parts.append("objects (learnt from instance masks)")
    else:
        parts.append("1 class" if n == 1 else f"{n} classes")
    parts.append(f"{model.in_channels} channel" + ("s" if model.in_channels > 1 else ""))
    dice = last_val_dice(model)
    if dice is not None:
        parts.append(f"val Dice {dice:.2f}")
    return " · ".join(parts)


def keep_previous_reason(previous: UNet | None, done) -> str | None:
    """Why the model in memory before a run is better kept than the run's model (``done``: its ``Done``), or
    None to take the new one. A run that trained nothing, or was stopped or ended with a worse held-out Dice
    than the model it replaces, must not silently lose that model: the dock keeps it and offers the new one."""
    from ..meta import last_val_dice, total_steps

    if previous is None or done.model is previous:
        return None
    if done.steps == 0:
        return "the run was stopped before any training step"
    before, after = last_val_dice(previous), done.val_dice
    if before is not None and after is not None:
        return f"val Dice {before:.2f} > {after:.2f}" if after < before else None
    if done.stopped and total_steps(done.model) < total_steps(previous):
        return f"{total_steps(previous)} training steps > {total_steps(done.model)} of the stopped run"
    return None
