"""The model in memory, seen from the Train dock: what it is, whether to fine-tune it, and its files (Load,
Save with the annotation layers beside it, Export as a bioimage.io package)."""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton

from ..errors import InputError
from . import _common as c
from ._state import ModelStore, describe_model


class ModelFilesPanel(Container):
    """The 'Model' section of the Train dock, over the viewer's ``ModelStore``."""

    def __init__(
        self, viewer, store: ModelStore, pairs: Callable[[], list[tuple]], running: Callable[[], bool], message
    ) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._store = store
        self._pairs = pairs  # the (image, labels) pairs ticked for training
        self._running = running
        self.info = c.wrapping_label()
        self.finetune = CheckBox(
            value=False,
            text="Continue from the model in memory (fine-tune)",
            tooltip="Train the model in memory further on these annotations instead of starting a new one.",
        )
        self.load = PushButton(text="Load model…")
        self.save = PushButton(text="Save model…")
        self.export = PushButton(
            text="Export…",
            tooltip="Write the model as a bioimage.io package (.zip) for Fiji/deepImageJ, ilastik, QuPath or BiaPy; "
            "its test image is cut from the first training image.",
        )
        self.use_new = PushButton(
            text="Use the new one anyway",
            visible=False,
            tooltip="Replace the model in memory by the model of the last run, although it scored worse or was "
            "stopped early.",
        )
        self._offered: tuple | None = None  # (model, origin) of a run that was not taken
        self.save_annotations = CheckBox(
            value=True,
            text="Also save the annotation layers next to the model",
            tooltip="Writes <model>.<layer>.tif for each annotation layer, so strokes survive a crash.",
        )
        buttons = Container(widgets=[self.load, self.save, self.export], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend([self.info, self.use_new, self.finetune, buttons, self.save_annotations])
        self.use_new.changed.connect(self.use_offered)
        self.load.changed.connect(c.guarded(lambda: self.load_model(), message))
        self.save.changed.connect(c.guarded(lambda: self.save_model(), message))
        self.export.changed.connect(c.guarded(lambda: self.export_model(), message))
        store.changed.connect(self.update_info)
        self.update_info()

    def update_info(self, *_) -> None:
        if not c.is_alive(self.native):
            return
        s = self._store
        self.info.value = f"<small>In memory: {html.escape(s.description)}</small>"
        self.save.enabled = self.export.enabled = s.model is not None and not self._running()
        if s.model is None:
            self.finetune.value = False
        self.finetune.enabled = s.model is not None and not self._running()

    def set_running(self, running: bool) -> None:
        """Nothing here can act while training runs: the model in memory changes only at its end."""
        if running:
            self.forget_offered()
        self.load.enabled = self.finetune.enabled = not running
        self.save.enabled = self.export.enabled = not running and self._store.model is not None

    def hold(self, model, origin: str) -> None:
        """Make ``model`` the one in memory, and continue from it at the next Train."""
        self._store.set(model, describe_model(model, origin))
        self.finetune.value = True

    @property
    def offering(self) -> bool:
        """True while a run's model that was not taken is offered ('Use the new one anyway')."""
        return self._offered is not None

    def finish_run(self, done, previous, origin: str) -> str | None:
        """The run's model becomes the one in memory, unless the previous one is kept: the core's verdict for a
        continued model (``Done.kept_previous``: its weights are back in ``done.model``), or ``previous`` beats
        a new model (``keep_previous_reason``); a new model not taken is offered with 'Use the new one anyway'.
        Returns the sentence saying what was kept, or None."""
        from ..training.continuation import kept_words
        from ._state import keep_previous_reason

        if done.kept_previous:
            trained = getattr(done, "trained_model", None)  # offered where the core hands it back
            self.hold(previous if previous is not None else done.model, "kept (the run did not improve it)")
            if trained is not None:
                self._offer(trained, origin)
            if done.previous_val_dice is None or done.trained_val_dice is None:
                return f"Kept the previous model: the run trained {done.steps} steps, too few to judge."
            return kept_words(done)
        reason = keep_previous_reason(previous, done)
        if reason is None:
            self.hold(done.model, origin)
            return None
        self._offer(done.model, origin)
        return f"Kept the previous model ({reason})."

    def _offer(self, model, origin: str) -> None:
        self._offered = (model, origin)
        self.use_new.visible = True
        self.finetune.value = True  # the next Train continues from the kept model

    def use_offered(self, *_) -> None:
        """'Use the new one anyway': the last run's model replaces the kept one."""
        if self._offered is not None:
            model, origin = self._offered
            self.forget_offered()
            self.hold(model, origin)
            c.report_info("The model of the last run is now the one in memory.")

    def forget_offered(self) -> None:
        self._offered = None
        self.use_new.visible = False

    def model_to_continue(self):
        """A copy of the model in memory to fine-tune, or None to train a new one."""
        if not self.finetune.value:
            return None
        if self._store.model is None:
            raise InputError("There is no model in memory to continue from: untick 'Continue from …'.")
        return copy.deepcopy(self._store.model)

    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the model in memory (and, if ticked, the annotation layers next to it)."""
        from ..checkpoint import save_model
        from ..io import write_labels

        if self._store.model is None:
            raise InputError("There is no model to save yet: train one first.")
        if path is None:
            path = _ask_path(self.native, save=True)
            if path is None:
                return None
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".pt")
        save_model(self._store.model, path, overwrite=True)
        written = [path.name]
        if self.save_annotations.value:
            for _, lab in self._pairs():
                target = path.with_name(f"{path.stem}.{_safe(lab.name)}.tif")
                write_labels(target, np.asarray(lab.data), overwrite=True)
                written.append(target.name)
        self._store.set(self._store.model, self._store.description)
        c.report_info(f"Saved {', '.join(written)} in {path.parent}.")
        return path

    def export_model(self, path: str | Path | None = None) -> Path | None:
        """Export the model in memory as a bioimage.io package; the test image is the first training image."""
        from ..export import export_model

        if self._store.model is None:
            raise InputError("There is no model to export yet: train or load one first.")
        images = [img for img, _ in self._pairs()] or list(c.image_layers(self._viewer))
        if not images:
            raise InputError("Open an image the model was trained on: the package's test input is cut from it.")
        overwrite = False
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                self.native, "Export model", "unet.zip", "bioimage.io package (*.zip)"
            )
            if not path:
                return None
            overwrite = True  # the dialog asked before replacing a file
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")
        export_model(self._store.model, path, c.layer_array(images[0]), overwrite=overwrite)
        c.report_info(f"Exported {path.name} (bioimage.io package) in {path.parent}.")
        return path

    def load_model(self, path: str | Path | None = None):
        """Load a model file into memory, ready to predict or to fine-tune on new annotations."""
        from ..checkpoint import load_model

        if path is None:
            path = _ask_path(self.native, save=False)
            if path is None:
                return None
        model = load_model(path)
        self.forget_offered()
        self.hold(model, f"loaded from {Path(path).name}")
        return model


def _safe(name: str) -> str:
    """A layer name as a piece of a file name."""
    return re.sub(r"[^\w\-]+", "_", name).strip("_") or "labels"


def _ask_path(parent, save: bool) -> str | None:
    from qtpy.QtWidgets import QFileDialog

    if save:
        path, _ = QFileDialog.getSaveFileName(parent, "Save model", "unet.pt", "napari-unet model (*.pt)")
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Load model", "", "napari-unet model (*.pt *.zip);;All files (*)")
    return path or None
