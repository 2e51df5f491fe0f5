"""Every knob of training and its default, in one place; torch-free, so the CLI and the widgets read it cheaply.

The CLI's arguments and the Train widget's spin boxes take their defaults from ``TrainConfig``'s fields (see
``default``), so a default changed here changes everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError


@dataclass
class TrainConfig:
    """Every knob of training, with defaults that work for a few strokes or a few masks on a laptop CPU."""

    # seconds of wall time from the start (preparation and pseudo-labels included); with `until_plateau` a
    # ceiling: training ends sooner once the held-out Dice (or, without validation, the loss) stops improving.
    # None: stop after `epochs`
    time_limit: float | None = 120.0
    epochs: int | None = None  # None: stop at the time limit (or the plateau)
    # end when no epoch improved for `patience` epochs, after a short annealing (not when `epochs` is given)
    until_plateau: bool = True
    patience: int = 5  # epochs (of steps_per_epoch steps) without improvement that make a plateau
    min_steps: int = 150  # no plateau is declared before this many steps
    steps_per_epoch: int = 20
    batch_size: int = 8
    patch_size: int = 128
    learning_rate: float = 2e-3
    min_lr_fraction: float = 0.05  # cosine decay over the run down to this fraction of learning_rate
    # where this run starts in the cosine schedule (0..1), with no new warm-up: later rounds of one session
    # (new strokes painted during training) continue the decay instead of restarting at the full rate
    schedule_start: float = 0.0
    filters: int = 16
    depth: int = 4
    dropout: float = 0.0
    augment: bool = True
    elastic: float = 0.5  # probability of elastic deformation per patch
    # brightness factor in [1 / (1 + contrast), 1 + contrast] (see augmentation.Augmentation); None: 1.0 for scribbles
    # (+0.04 Dice on the strokes benchmark: a model learnt from a few strokes otherwise keys on absolute levels,
    # which per-image percentile normalization leaves image-dependent), 0 for complete masks
    contrast: float | None = None
    blur: float = 0.0  # probability of a Gaussian blur per patch
    val_fraction: float = 0.1  # annotated pixels held out (in blocks) for validation Dice
    class_balance: bool | None = None  # None: on for scribbles, off for complete masks
    # scribbles only: dense pseudo-labels (random forest on pixel features, boundaries snapped to edges by a
    # watershed) as extra supervision weighted by pseudo_weight; computed inside the time limit. See pseudo.py (training/)
    pseudo_labels: str = "auto"  # 'auto' (= 'forest' for scribbles, 'none' for complete masks), 'forest', 'none'
    pseudo_weight: float = 2.0
    pseudo_confidence: float = 0.75  # forest probability above which a pixel seeds the watershed
    # at most this fraction of time_limit goes to pseudo-labels; tiles not reached keep their strokes only
    pseudo_time: float = 0.3
    self_training: float = 0.5  # > 0: at this fraction of the run, redo the pseudo-labels from the U-Net itself
    dice_weight: float = 1.0
    # continuing a model: patches centre on the annotated pixels it got wrong this many times as often as on one
    # class's pixels (0: no emphasis); and keep_better: a run that scores lower on the held-out annotations than
    # the model it started from (or is stopped too early to judge) gives the starting model back (continuation.py)
    correction_weight: float = 2.0
    keep_better: bool = True
    # continuing a model: its weights end as this share of the starting weights + the rest of the trained ones
    # (0: the trained weights alone); keeps a local fix from drifting the whole network (continuation.blend)
    blend_previous: float = 0.7
    # continuing a model: the trained weights are the exponential moving average of its steps (0: the last step's),
    # steadier than where a short run happens to end (continuation.WeightAverage)
    average_decay: float = 0.98
    mode: str = "auto"  # 'sparse', 'dense' or 'auto'
    multiclass: bool = False  # dense labels are class ids rather than foreground/instances
    # learn object boundaries (background / interior / boundary, see instances.py) so prediction separates
    # touching objects; None: when dense labels are instance masks (ids > 1) and multiclass is off
    instances: bool | None = None
    # 'auto': detect RGB-like trailing axes (or the model's channel count); None: no channel axis; else the axis
    # (the same sentinel as predict's channel_axis)
    channel_axis: int | None | str = "auto"
    seed: int = 0  # the same seed and data give the same model bit for bit with a fixed `threads` count
    device: str = "auto"
    precision: str = "auto"
    # CPU threads of the network; None: chosen by the speed measured early in the run and again when it drops
    # (threads.py): on a busy machine fewer threads than cores train faster
    threads: int | None = None
    leave_core: bool = False  # a GUI thread shares the CPU (the viewer): try one thread fewer than the cores too
    # volumes (volume.py): the first non-channel axis is Z and a 3D U-Net learns 3D objects from 3D patches
    volume: bool = False
    anisotropy: float | None = None  # Z spacing / XY spacing; None: the model's, else 1 (the CLI reads TIFFs)
    volume_patch_depth: int = 16  # planes (Z) of a training patch of a volume
    volume_patch_size: int = 64  # its side in Y and X
    volume_batch_size: int = 2
    volume_depth: int = 3  # poolings of the 3D U-Net (in Z only once voxels are near-isotropic)

    def __post_init__(self) -> None:
        if self.time_limit is None and self.epochs is None:
            raise InputError("Give a time limit or a number of epochs, or training would never end.")
        if self.time_limit is not None and not self.time_limit > 0:
            raise InputError(f"time_limit must be > 0 seconds, got {self.time_limit}.")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise InputError(f"epochs must be a whole number >= 1, got {self.epochs}.")
        for name in ("steps_per_epoch", "batch_size", "patch_size", "filters", "depth"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}.")
        if self.patch_size < 16:
            raise InputError(f"patch_size must be at least 16 pixels, got {self.patch_size}.")
        if not 0 <= self.schedule_start < 1:
            raise InputError(f"schedule_start must be in [0, 1), got {self.schedule_start}.")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 <= self.val_fraction < 0.5:
            raise InputError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}.")
        if isinstance(self.channel_axis, str) and self.channel_axis != "auto":
            raise InputError(f"channel_axis must be 'auto', None or an axis number, got {self.channel_axis!r}.")
        if self.mode not in ("auto", "sparse", "dense"):
            raise InputError(f"mode must be 'auto', 'sparse' or 'dense', got {self.mode!r}.")
        if self.pseudo_labels not in ("auto", "forest", "none"):
            raise InputError(f"pseudo_labels must be 'auto', 'forest' or 'none', got {self.pseudo_labels!r}.")
        if self.contrast is not None and not self.contrast >= 0:
            raise InputError(f"contrast must be >= 0, got {self.contrast}.")
        if not 0 <= self.self_training < 1:
            raise InputError(f"self_training must be in [0, 1), got {self.self_training}.")
        if not 0 <= self.average_decay < 1:
            raise InputError(f"average_decay must be in [0, 1), got {self.average_decay}.")
        if not 0 <= self.blend_previous < 1:
            raise InputError(f"blend_previous must be in [0, 1), got {self.blend_previous}.")
        if not self.correction_weight >= 0:
            raise InputError(f"correction_weight must be >= 0, got {self.correction_weight}.")
        if not self.pseudo_weight >= 0:
            raise InputError(f"pseudo_weight must be >= 0, got {self.pseudo_weight}.")
        if not 0 < self.pseudo_time <= 1:
            raise InputError(f"pseudo_time must be in (0, 1], got {self.pseudo_time}.")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise InputError(f"patience must be a whole number of epochs >= 1, got {self.patience!r}.")
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise InputError(f"min_steps must be a whole number >= 0, got {self.min_steps!r}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads must be a whole number >= 1 or None (chosen by speed), got {self.threads!r}.")
        if not 0.5 <= self.pseudo_confidence < 1:
            raise InputError(f"pseudo_confidence must be in [0.5, 1), got {self.pseudo_confidence}.")
        self._check_volume()

    def _check_volume(self) -> None:
        if self.volume:  # held-out blocks are 2D (validation.py): a volume run's plateau follows its loss
            self.val_fraction = 0.0
        if self.anisotropy is not None:
            from ..volume import check_anisotropy

            self.anisotropy = check_anisotropy(self.anisotropy)
        for name, low in (
            ("volume_patch_depth", 1),
            ("volume_patch_size", 16),
            ("volume_batch_size", 1),
            ("volume_depth", 1),
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise InputError(f"{name} must be a whole number >= {low}, got {getattr(self, name)!r}.")


def make_config(config: TrainConfig | None = None, **overrides) -> TrainConfig:
    """A config from defaults or a base config, with keyword overrides checked by name."""
    base = config or TrainConfig()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise InputError(f"Unknown training option(s) {sorted(unknown)}; known: {sorted(names)}.")
    return dataclasses.replace(base, **overrides)


TRUSTED_STEPS = 100  # fewer steps than this: the model is flagged as not to be trusted yet


# a plateau needs the held-out Dice's recent slope times the budget left to promise less than this (schedule.py)
PLATEAU_GAIN = 0.01


MIN_USEFUL_DICE = 0.5  # a held-out Dice below this: the run's verdict is 'poor' (training/verdict.py)


MAX_BAD_STEPS = 10  # non-finite losses in a row before training stops (keeping the last good weights)


SHORT_RUN_STEPS = 100  # a budget that affords fewer steps than this trains on smaller patches and batches


SELF_TRAIN_MIN_STEPS = 100  # self-training waits for this many steps where no held-out strokes say more


def default(name: str):
    """The default of one ``TrainConfig`` field: what the CLI's help and the widget's spin boxes show."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == name:
            return f.default
    raise KeyError(f"TrainConfig has no field {name!r}")


# ---------------------------------------------------------------------------------------------- the session
# defaults of a train session in the viewer (the Train dock), beside the training defaults above

PREVIEW_INTERVAL = 3.0  # seconds between live previews
PREVIEW_UNCERTAINTY = False  # each live preview also maps where the model is unsure (the Train dock's option)
# the live preview's uncertainty: one pass's entropy, smoothed ("entropy"), not the 8-pass "tta" of Predict
# (``uncertainty.METHODS``): it reuses the preview's own probabilities, where TTA costs 7x the preview
PREVIEW_UNCERTAINTY_METHOD = "entropy"
MIN_ROUND_SECONDS = 2.0  # new strokes are taken in at most this often

# ---------------------------------------------------------------------------------------------- the other commands
# prediction, scoring and the demo: their defaults here too, so the CLI, the docks and the API share them

DEFAULT_THRESHOLD = 0.5  # foreground probability above which a pixel is foreground (binary models)
DEFAULT_IOU_THRESHOLD = 0.5  # objects match one to one at IoU >= this
DEFAULT_STITCH_THRESHOLD = 0.0  # IoU that links an object to the previous Z plane's (0: ids are not linked)
VOLUME_TILE = (32, 128, 128)  # (Z, Y, X) voxels per forward pass of a volume model: memory bounded in depth too
VOLUME_OVERLAP = (8, 32, 32)  # voxels shared by neighbouring volume tiles (blended with a linear ramp)
DEMO_TIME_LIMIT = 60.0  # seconds of training in the demo: a first look (TrainConfig's default is longer)
