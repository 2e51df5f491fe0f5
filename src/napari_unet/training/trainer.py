"""The one training loop, shared by the CLI, the widgets and the Python API.

``Trainer.run()`` is a generator of small typed events (``events.py``); the last one, ``Done``, carries the
trained model. A headless caller just iterates (or calls ``train``); the Train dock runs it inside a train
session (``jobs.train_session``) in a ``thread_worker``, and ``stop()`` from the GUI thread takes effect
before the next step. The rooms around the loop: ``dataset`` (the samples, prepared once), ``validation`` (held-out blocks),
``schedule`` (budget, learning rate, plateau), ``selftrain`` (pseudo-labels), ``losses``, ``augmentation``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Generator, Iterator

import numpy as np
import torch

from .._version import __version__
from ..labels import PSEUDO
from ..meta import preview_meta, record_run, record_verdict, run_entry
from ..model import UNet
from ..runtime import autocast, channels_last, pick_device, pick_precision, prepare_module
from ..threads import ThreadChooser, chosen_threads
from . import selftrain
from .augmentation import Augmentation
from .config import MAX_BAD_STEPS, TrainConfig, make_config
from .continuation import begin, blend, follow, sampler_for, settle
from .dataset import TrainingData, prepare_data
from .events import EPOCHS, NOT_FINITE, PLATEAU, STOPPED, TIME_LIMIT, Done, Epoch, Event, Prepared, Preparing, Step
from .losses import segmentation_loss, sparse_loss
from .patches import PatchSampler
from .schedule import Schedule, ShortRunPatch, pseudo_deadline, short_run_patch
from .validation import blocks_dice, predict_blocks, split_validation
from .verdict import judge_trainer, verdict_fields
from .volume_data import prepare_volume_data
from .volume_patches import volume_parts


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(q.grad.detach().float()) for q in params]))


def _warn_not_finite(steps: int, in_a_row: int) -> bool:
    """Warn about a skipped non-finite step; True when too many in a row end the run."""
    if in_a_row == 1:
        warnings.warn(
            f"After step {steps} the loss was not finite (NaN or inf): the step was skipped and "
            "the model keeps its weights; if this persists, lower the learning rate.",
            RuntimeWarning,
            stacklevel=4,
        )
    if in_a_row < MAX_BAD_STEPS:
        return False
    warnings.warn(
        f"Training stopped: the loss was not finite for {MAX_BAD_STEPS} steps in a row; the model "
        f"keeps the weights of step {steps}. Lower the learning rate or check the images.",
        RuntimeWarning,
        stacklevel=4,
    )
    return True


def _data(name: str, doc: str) -> property:
    """A read-only attribute of the trainer that the prepared data holds."""
    return property(lambda self: getattr(self.data, name), doc=doc)


class Trainer:
    """Trains (or fine-tunes) a U-Net on images and their annotations.

    ``images`` and ``labels`` are arrays or lists of arrays; a label image has the image's shape without
    its channel axis. Stacks (Z or T) train on every 2D plane. ``pseudo_cache`` (a ``pseudo.PseudoCache``)
    keeps pseudo-labelling work across runs on the same images.
    """

    def __init__(
        self,
        images,
        labels,
        config: TrainConfig | None = None,
        model: UNet | None = None,
        pseudo_cache=None,
        **overrides,
    ) -> None:
        created = time.perf_counter()
        self.config = cfg = make_config(config, **overrides)
        self.data: TrainingData = (prepare_volume_data if cfg.volume else prepare_data)(images, labels, cfg, model)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        samples = self.data.samples
        self.train_samples, self.val_blocks = split_validation(samples, cfg.val_fraction, self.rng, cfg.patch_size)
        # pixels held out for validation must not come back as pseudo-labels
        self._held_out = [(s.target >= 0) & (t.target < 0) for s, t in zip(samples, self.train_samples, strict=True)]
        self._stroke_samples = list(self.train_samples)
        self.use_pseudo = selftrain.uses_pseudo_labels(cfg, self.mode) and not cfg.volume  # volumes: strokes only
        self.pseudo_cache = pseudo_cache
        self.labeler = None  # the PseudoLabeler, once run() has started
        self.forest_val_dice: float | None = None
        contrast = cfg.contrast if cfg.contrast is not None else (1.0 if self.mode == "sparse" else 0.0)
        if cfg.volume:  # 3D patches, 3D augmentation, a 3D U-Net (see volume_patches)
            self.sampler, self.augment, model = volume_parts(self.train_samples, self.data, cfg, contrast, model)
        else:
            self.sampler = PatchSampler(self.train_samples, cfg.patch_size, self.rng)
            self.augment = Augmentation(elastic=cfg.elastic, contrast=contrast, blur=cfg.blur) if cfg.augment else None
        self.class_balance = cfg.class_balance if cfg.class_balance is not None else self.mode == "sparse"

        self.device = pick_device(cfg.device)
        self.precision = pick_precision(self.device, cfg.precision, cfg.volume)
        if model is None:
            model = UNet(self.in_channels, self.n_classes, cfg.filters, cfg.depth, cfg.dropout)
        self.model = prepare_module(model, self.device, self.precision)
        self._optimizer: torch.optim.Optimizer | None = None  # made at the first step (see ``optimizer``)
        self.schedule = Schedule(cfg)
        self._stop = False
        self.steps = self.skipped_steps = self.epochs = 0
        self.last_loss: float | None = None
        self.val_dice: float | None = None
        self.small_patch = self.small_batch = None  # int: the budget affords few steps (see _adapt_patch)
        # the budget is the user's wall time: preparing the data counts (run() adds it to its clock)
        self.prepare_seconds = time.perf_counter() - created

    # what the prepared data says (see ``dataset.TrainingData``)
    mode = _data("mode", "'sparse' (scribbles) or 'dense' (complete masks)")
    boundaries = _data("boundaries", "whether the boundary target of instance masks is learnt")
    instances = _data("boundaries", "``boundaries`` under the name of earlier versions")
    n_classes = _data("n_classes", "foreground classes the model predicts (2 for a boundary model)")
    in_channels = _data("in_channels", "image channels")
    class_counts = _data("class_counts", "annotated pixels per class id")
    n_annotated = _data("n_annotated", "annotated pixels")
    planes_used = _data("planes_used", "annotated planes (of ``planes_total``)")
    planes_total = _data("planes_total", "planes of all images")
    sample_keys = _data("sample_keys", "(image, plane index) of each sample")
    data_shapes = _data("data_shapes", "the images' shapes")
    normalization = _data("normalization", "the normalization rule")
    object_size = _data("object_size", "typical object diameter in pixels, or None")
    channel_axes = _data("channel_axes", "each image's channel axis")

    @property
    def plateau(self) -> bool:
        return self.schedule.plateau

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Adam, made at the first step: the first ``torch.optim`` optimizer of a process imports
        ``torch._dynamo`` (1-1.5 s on 2 cores), which would otherwise delay the forest's first preview."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate)
        return self._optimizer

    def stop(self) -> None:
        """Ask the run to end; it finishes the current step and yields ``Done``. Safe from any thread."""
        self._stop = True

    def __iter__(self) -> Iterator[Event]:
        return self.run()

    # ------------------------------------------------------------------------------------------ one step

    def train_step(self, fraction: float = 0.0) -> float:
        """One optimizer step on one augmented batch; returns the loss (NaN for a skipped, non-finite step)."""
        cfg = self.config
        self.model.train()
        if self.small_patch:
            self.sampler.patch = self.small_patch
        x, y = self.sampler.batch(self.small_batch or (cfg.volume_batch_size if cfg.volume else cfg.batch_size))
        if self.augment is not None:
            x, y = self.augment(x, y, self.generator)
        x = x.to(self.device, memory_format=channels_last(x.ndim, self.precision))
        y = y.to(self.device)
        self._set_lr(fraction)
        self.optimizer.zero_grad(set_to_none=True)
        # BatchNorm statistics change in the forward pass: keep them, so a failed step leaves no trace
        saved = [b.detach().clone() for b in self.model.buffers()]
        try:
            with autocast(self.device, self.precision):
                logits = self.model(x)
            if self.use_pseudo:
                loss = sparse_loss(logits, y, cfg.pseudo_weight, self.class_balance, cfg.dice_weight, PSEUDO)
            else:
                loss = segmentation_loss(logits, y, self.class_balance, cfg.dice_weight)
            loss.backward()
            params = [q for q in self.model.parameters() if q.grad is not None]
            finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(_grad_norm(params)))
        except BaseException:  # an error or Ctrl-C mid-step: the model stays at its last completed step
            self._undo_step(saved)
            raise
        if not finite:  # a NaN/inf loss or gradient would poison the weights: skip this step
            self._undo_step(saved)
            self.skipped_steps += 1
            return float("nan")
        self.optimizer.step()
        self.steps += 1
        follow(self)  # a continued run's running average of weights (continuation.py)
        return float(loss.detach())

    def _undo_step(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for b, old in zip(self.model.buffers(), saved, strict=True):
                b.copy_(old)
        self.optimizer.zero_grad(set_to_none=True)

    def _set_lr(self, fraction: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * self.schedule.lr_scale(self.steps, fraction)

    def _adapt_patch(self, elapsed: float, step_seconds: float) -> None:
        """After step 2 or 3 (``ShortRunPatch``): a budget of few steps trains on smaller patches (``schedule.short_run_patch``)."""
        depth, continued = getattr(self.model, "depth", 4), getattr(self, "continuation", None) is not None
        smaller = short_run_patch(self.config, elapsed, step_seconds, depth, continued)
        if smaller is not None:
            self.small_patch, self.small_batch = smaller

    # ------------------------------------------------------------------------------------------ pseudo-labels

    def prepare(self, deadline: float = math.inf) -> Iterator[Preparing]:
        """The forest's pseudo-labels for the scribbled planes (see ``selftrain``); yields progress. Done once."""
        if self.labeler is not None or not self.use_pseudo:
            return
        from .pseudo import PseudoCache

        if self.pseudo_cache is None:
            self.pseudo_cache = PseudoCache()
        self.labeler, self.train_samples = yield from selftrain.forest_pseudo_labels(
            self._stroke_samples, self._held_out, self.n_classes, self.config, self.pseudo_cache,
            lambda: self._stop, deadline,
        )  # fmt: skip
        self.sampler = sampler_for(self)
        dense = self.labeler.dense
        self.forest_val_dice = self._blocks_dice([dense[b.sample][b.where] for b in self.val_blocks])

    def pseudo_labels_in(self, image: int, plane: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int]):
        """The forest's pseudo-labels of a box of one plane (the first preview), or None where it has none."""
        if self.labeler is None or (image, tuple(plane)) not in self.sample_keys:
            return None
        return selftrain.pseudo_box(self.labeler.dense[self.sample_keys.index((image, tuple(plane)))], rows, cols)

    def refresh_pseudo_labels(self, deadline: float = math.inf) -> None:
        """Self-training: the U-Net's own confident pixels replace the forest's (see ``selftrain``)."""
        if self.labeler is None:
            return
        self.train_samples = selftrain.self_trained_samples(
            self.model, self.labeler.dense, self._stroke_samples, self._held_out, self.config, self.device,
            self.precision, lambda: self._stop, deadline,
        )  # fmt: skip
        self.model.train()
        self.sampler = sampler_for(self)

    def _may_self_train(self) -> bool:
        return selftrain.unet_beats_forest(self.steps, self.val_dice, self.forest_val_dice)

    # ------------------------------------------------------------------------------------------ the loop

    def run(self) -> Iterator[Event]:
        start = time.perf_counter() - self.prepare_seconds  # from the Trainer's creation: preparing is part of it
        self.sampler = begin(self)  # a continued model's score and mistakes first (see continuation.py)
        with chosen_threads("train", threads=self.config.threads, leave_core=self.config.leave_core) as chooser:
            if self.use_pseudo:
                yield from self.prepare(pseudo_deadline(self.config, start))
                labeler = self.labeler
                tiles = (labeler.tiles_done, labeler.tiles_total) if labeler else (0, 0)
                yield Prepared(time.perf_counter() - start, *tiles, self.forest_val_dice)
            reason = yield from self._steps(start, chooser)
            blended = blend(self)  # a continued run: trained and starting weights averaged (continuation.py)
            if (blended or self.steps % self.config.steps_per_epoch) and self.val_blocks:
                self.val_dice = self.validate()
        model = self.finish(time.perf_counter() - start)
        yield settle(self, Done(
            model, self.steps, self.epochs, time.perf_counter() - start, self.last_loss, self.val_dice, self._stop,
            self.skipped_steps, self.plateau, self.forest_val_dice, reason,
            threads=chooser.choice.summary(), **verdict_fields(model),
        ))  # fmt: skip

    def _steps(self, start: float, chooser: ThreadChooser) -> Generator[Step | Epoch, None, str]:
        """Steps until the budget, the epochs, the end of the annealing after a plateau, or ``stop()``; returns
        why they ended (``Done.reason``)."""
        cfg, schedule = self.config, self.schedule
        refresh = self.use_pseudo and cfg.self_training > 0
        epoch_losses: list[float] = []
        elapsed = time.perf_counter() - start
        bad_in_a_row, patch = 0, ShortRunPatch()
        step_seconds = 0.0  # recent step duration, so the last step does not overrun the budget
        val_seconds = 0.0  # the last validation's duration: one more runs after the last step
        while not self._stop:
            fraction = schedule.last_fraction = schedule.fraction(elapsed, self.steps)
            if schedule.annealed(self.steps):
                return PLATEAU
            if fraction >= 1.0:
                return (
                    EPOCHS if cfg.epochs is not None and self.steps >= cfg.epochs * cfg.steps_per_epoch else TIME_LIMIT
                )
            if cfg.time_limit is not None and self.steps and elapsed + step_seconds + val_seconds > cfg.time_limit:
                return TIME_LIMIT  # the next step (and the last validation) would end past the budget
            if refresh and (fraction >= cfg.self_training or schedule.anneal is not None) and self._may_self_train():
                refresh = False
                # self-training gets at most a tenth of the budget that is left
                left = (cfg.time_limit - elapsed) / 10 if cfg.time_limit is not None else math.inf
                self.refresh_pseudo_labels(time.perf_counter() + left)
            step_start = time.perf_counter()
            loss = self.train_step(fraction)
            chooser.observe(took := time.perf_counter() - step_start)  # the step rate chooses the threads
            step_seconds = took if not self.steps or step_seconds == 0 else 0.8 * step_seconds + 0.2 * took
            patch.observe(self, chooser, took, time.perf_counter() - start)  # a short budget: half patches?
            elapsed = time.perf_counter() - start
            if not math.isfinite(loss):
                bad_in_a_row += 1
                if _warn_not_finite(self.steps, bad_in_a_row):
                    self._stop = True
                    return NOT_FINITE
                continue
            bad_in_a_row = 0
            self.last_loss = loss
            epoch_losses.append(loss)
            yield Step(self.steps, self.epochs, loss, elapsed, schedule.fraction(elapsed, self.steps))
            if self.steps % cfg.steps_per_epoch == 0:
                val_start = time.perf_counter()
                epoch = self._end_epoch(float(np.mean(epoch_losses)), start)
                val_seconds = time.perf_counter() - val_start
                elapsed = epoch.elapsed
                yield epoch
                epoch_losses = []
        return STOPPED

    def _end_epoch(self, epoch_loss: float, start: float) -> Epoch:
        self.epochs += 1
        self.val_dice = self.validate()
        elapsed = time.perf_counter() - start
        self.schedule.check_plateau(self.val_dice, epoch_loss, self.steps, elapsed)
        return Epoch(
            self.epochs, self.steps, epoch_loss, self.val_dice, elapsed, self.schedule.fraction(elapsed, self.steps)
        )

    # ------------------------------------------------------------------------------------------ results

    def _blocks_dice(self, predictions: list[np.ndarray]) -> float | None:
        return blocks_dice(self.val_blocks, predictions, self.n_classes, self.boundaries)

    def validate(self) -> float | None:
        """Dice (mean over foreground classes) on the held-out annotated blocks."""
        if not self.val_blocks:
            return None
        return self._blocks_dice(predict_blocks(self.model, self.val_blocks, self.device, self.precision))

    def finish(self, elapsed: float = 0.0) -> UNet:
        """The model in eval mode with everything needed to reuse it recorded in ``model.meta``."""
        model = self.model.eval()
        run = run_entry(
            steps=self.steps, seconds=elapsed, loss=self.last_loss, val_dice=self.val_dice,
            data_shapes=self.data_shapes, annotated_pixels=self.n_annotated, label_mode=self.mode,
        )  # fmt: skip
        record_run(
            model.meta, normalization=self.normalization, label_mode=self.mode, multiclass=self.config.multiclass,
            boundaries=self.boundaries, object_size=self.object_size, config=dataclasses.asdict(self.config),
            run=run, version=__version__,
        )  # fmt: skip
        record_verdict(model.meta, *judge_trainer(self))  # 'ok', 'poor' or 'useless' (verdict.py)
        return model

    def snapshot(self) -> UNet:
        """A CPU copy of the current model in eval mode, e.g. for a live preview or saving mid-run."""
        model = copy.deepcopy(self.model).to("cpu").eval()
        model.meta = preview_meta(
            copy.deepcopy(self.model.meta), normalization=self.normalization, label_mode=self.mode,
            boundaries=self.boundaries,
        )  # fmt: skip
        return model


def train(
    images,
    labels,
    config: TrainConfig | None = None,
    model: UNet | None = None,
    callback: Callable[[Event], None] | None = None,
    **overrides,
) -> UNet:
    """Train (or fine-tune ``model``) and return the trained ``UNet``; ``callback`` sees every event."""
    trainer = Trainer(images, labels, config, model, **overrides)
    for event in trainer.run():
        if callback is not None:
            callback(event)
        if isinstance(event, Done):
            return event.model
    raise RuntimeError("training ended without a result")  # unreachable: run() always ends with Done
