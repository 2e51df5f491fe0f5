"""The Train dock's advanced settings: the training knobs it offers, under ``TrainConfig``'s names and with its
defaults, and the live preview's settings."""

from __future__ import annotations

from magicgui.widgets import CheckBox, Container, FloatSpinBox, SpinBox

from ..errors import InputError
from ..training.config import PREVIEW_INTERVAL, PREVIEW_UNCERTAINTY, default
from . import _common as c

#: the ``TrainConfig`` fields the form sets (a spin box at 0 means None for time_limit and epochs)
TRAINING = (
    "time_limit", "until_plateau", "epochs", "steps_per_epoch", "filters", "depth", "patch_size", "batch_size",
    "learning_rate", "augment", "multiclass", "volume", "anisotropy",
)  # fmt: skip
#: the live preview's settings: they apply while training runs
PREVIEW = ("preview", "preview_every", "preview_uncertainty")


# the names set_settings took before it used TrainConfig's
_EARLIER_NAMES = {"patch": "patch_size", "batch": "batch_size", "lr": "learning_rate"}


class SettingsPanel:
    """The 'Advanced settings' form, folded by default; one widget per setting, named as the setting."""

    def __init__(self) -> None:
        self.time_limit = FloatSpinBox(
            value=default("time_limit") or 0,
            min=0,
            max=86400,
            step=10,
            label="Time budget (s)",
            tooltip="At most this many seconds from the click on Train, preparation included; 0 = no time limit "
            "(use epochs)",
        )
        self.until_plateau = CheckBox(
            value=default("until_plateau"),
            text="Stop when it stops improving",
            tooltip="End sooner than the time budget once the held-out Dice (or the loss) stops improving",
        )
        self.epochs = SpinBox(
            value=default("epochs") or 0, min=0, max=100000, label="Epochs", tooltip="0 = train until the time is up"
        )
        self.steps_per_epoch = SpinBox(value=default("steps_per_epoch"), min=1, max=10000, label="Steps per epoch")
        self.filters = SpinBox(
            value=default("filters"), min=2, max=256, label="Filters", tooltip="Width of the first U-Net level"
        )
        self.depth = SpinBox(
            value=default("depth"), min=1, max=7, label="Depth", tooltip="Number of down-sampling levels"
        )
        self.patch_size = SpinBox(
            value=default("patch_size"), min=16, max=2048, step=16, label="Patch size", tooltip="Training patch side"
        )
        self.batch_size = SpinBox(value=default("batch_size"), min=1, max=256, label="Batch size")
        self.learning_rate = FloatSpinBox(
            value=default("learning_rate"), min=1e-5, max=1.0, step=0.0005, label="Learning rate"
        )
        self.learning_rate.native.setDecimals(5)
        self.augment = CheckBox(value=default("augment"), text="Augment (flips, rotations, elastic, intensity)")
        self.multiclass = CheckBox(
            value=default("multiclass"),
            text="Dense labels are class ids",
            tooltip="Complete masks where value k means class k",
        )
        self.volume = CheckBox(
            value=default("volume"),
            text="Volume (Z)",
            tooltip="Each image is a Z-stack segmented as 3D objects by a 3D U-Net, learnt from the painted planes "
            "or strokes (time-lapses: leave off)",
        )
        self.anisotropy = FloatSpinBox(
            value=default("anisotropy") or 0,
            min=0,
            max=100,
            step=0.5,
            label="Z / XY spacing",
            tooltip="Anisotropy of the volumes; 0 = from the image layer's scale",
        )
        self.preview = CheckBox(
            value=True,
            text="Live preview",
            tooltip="Every few seconds, predict the visible region into a preview layer while training",
        )
        self.preview_every = FloatSpinBox(value=PREVIEW_INTERVAL, min=1, max=600, step=1, label="Preview every (s)")
        self.preview_uncertainty = CheckBox(
            value=PREVIEW_UNCERTAINTY,
            text="Show uncertainty",
            tooltip="With each live preview, map where the model is unsure (0 = sure, 1 = unsure) into an "
            "'... uncertainty' layer: the entropy of the preview's probabilities (one pass, so it costs almost "
            "nothing; Predict's map averages 8 flips and rotations). 'Next unsure region' finds where to paint.",
        )
        self.form = Container(widgets=[getattr(self, name) for name in (*TRAINING, *PREVIEW)])

        from superqt import QCollapsible

        self.collapsible = QCollapsible("Advanced settings")
        self.collapsible.addWidget(self.form.native)
        self.collapsible.layout().setContentsMargins(0, 0, 0, 0)
        self.widget = c.wrap_qt(self.collapsible)

    def overrides(self) -> dict:
        """The settings as ``TrainConfig`` keyword arguments (0 s / 0 epochs: no limit of that kind)."""
        values = {name: getattr(self, name).value for name in TRAINING}
        values["time_limit"] = float(values["time_limit"]) or None
        values["epochs"] = int(values["epochs"]) or None
        values["learning_rate"] = float(values["learning_rate"])
        for name in ("steps_per_epoch", "filters", "depth", "patch_size", "batch_size"):
            values[name] = int(values[name])
        for name in ("until_plateau", "augment", "multiclass", "volume"):
            values[name] = bool(values[name])
        values["anisotropy"] = float(values["anisotropy"]) or None
        return values

    def set(self, **values) -> None:
        """Set settings by name: the ``TrainConfig`` names in ``TRAINING``, and those in ``PREVIEW``."""
        for name, value in values.items():
            if name not in TRAINING + PREVIEW:
                was = _EARLIER_NAMES.get(name)
                hint = f" (it is called {was!r} now, as in TrainConfig)" if was else ""
                raise InputError(f"Unknown setting {name!r}{hint}; known: {', '.join(TRAINING + PREVIEW)}.")
            getattr(self, name).value = value

    def set_running(self, running: bool) -> None:
        """Every training setting is fixed while training runs; the preview's apply at once."""
        for name in TRAINING:
            getattr(self, name).enabled = not running
