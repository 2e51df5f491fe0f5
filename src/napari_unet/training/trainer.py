"""The one training loop, shared by the CLI, the widgets and the Python API.

``Trainer.run()`` is a generator of small typed events; the last one, ``Done``, carries the trained model.
A headless caller just iterates (or calls ``train``); the napari widget runs the same generator in a
``thread_worker`` and calls ``stop()`` from the GUI thread, which takes effect before the next step.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import math
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .._version import __version__
from ..errors import InputError
from ..images import check_fits, check_image, guess_channel_axis, iter_slices, spatial_shape
from ..labels import IGNORE, PSEUDO, _integer_labels, count_classes, labels_to_target, resolve_label_mode
from ..meta import VERSION
from ..model import UNet
from ..normalization import DEFAULT_NORMALIZATION, normalize
from ..runtime import autocast, pick_device, pick_precision, prepare_module
from .augmentation import Augmentation
from .config import MAX_BAD_STEPS, SELF_TRAIN_MIN_STEPS, SHORT_RUN_STEPS, TrainConfig, make_config
from .events import Done, Epoch, Event, Prepared, Preparing, Step
from .losses import segmentation_loss, sparse_loss
from .patches import PatchSampler, Sample
from .validation import split_validation

# ---------------------------------------------------------------------------------------------- events


# ---------------------------------------------------------------------------------------------- trainer


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(q.grad.detach().float()) for q in params]))


def _as_list(x) -> list:
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


class Trainer:
    """Trains (or fine-tunes) a U-Net on images and their annotations.

    ``images`` and ``labels`` are arrays or lists of arrays; a label image has the image's shape without
    its channel axis. Stacks (Z or T) train on every 2D plane.
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
        images, labels = _as_list(images), _as_list(labels)
        if not images:
            raise InputError("No images given: give at least one image and its labels.")
        if len(images) != len(labels):
            raise InputError(f"{len(images)} images but {len(labels)} label images: give one label image per image.")
        in_channels = model.in_channels if model is not None else None
        images = [check_image(img, f"Image {k}") for k, img in enumerate(images)]
        # labels are converted whole and annotated planes kept as float32: check that fits before reading
        pixels = sum(math.prod(np.shape(lab)) for lab in labels)
        largest = max(math.prod(img.shape) for img in images)
        check_fits(
            12 * pixels + 12 * largest,
            "Training on these images",
            "crop them to the annotated region, or train on fewer or smaller images.",
        )
        label_arrays = [np.asarray(lab) for lab in labels]
        for k, lab in enumerate(label_arrays):
            _integer_labels(lab, f"labels of image {k}")  # dtype and values, before guessing the mode
        self.mode = resolve_label_mode(label_arrays, cfg.mode, cfg.multiclass)
        self.instances = _learn_instances(cfg, self.mode, label_arrays, model)
        self.object_size = _object_size(self.mode, self.instances, label_arrays, model)
        self.normalization = dict((model.meta.get("normalization") if model else None) or DEFAULT_NORMALIZATION)

        samples: list[Sample] = []
        self.sample_keys: list[tuple[int, tuple[int, ...]]] = []  # (image, plane index) of each sample
        n_lost = 0  # annotated pixels on NaN/inf image pixels
        self.channel_axes: list[int | None] = []
        # planes that take part / all planes: in dense mode a plane with no label at all is unpainted, not
        # "all background" (complete masks on 1 plane of a stack must not make the 19 others background)
        self.planes_used = self.planes_total = 0
        for k, (img, lab) in enumerate(zip(images, label_arrays, strict=True)):
            shape = tuple(np.shape(img))
            axis = guess_channel_axis(shape, in_channels) if cfg.channel_axis == "auto" else cfg.channel_axis
            sp = spatial_shape(shape, axis)
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
            target = labels_to_target(lab, self.mode, cfg.multiclass)
            if self.instances:
                from ..instances import boundary_target

                target = boundary_target(lab)
            check_finite = np.dtype(img.dtype).kind == "f"
            any_finite = not check_finite
            for idx, plane in iter_slices(img, axis):
                if in_channels is None:
                    in_channels = plane.shape[0]
                elif plane.shape[0] != in_channels:
                    raise InputError(
                        f"Image {k} has {plane.shape[0]} channels but the others (or the model) have "
                        f"{in_channels}: train one model per channel count."
                    )
                t = target[idx]
                self.planes_total += 1
                if check_finite:  # NaN/inf pixels carry no information: their annotations are ignored
                    bad = ~np.isfinite(plane).all(axis=0)
                    any_finite = any_finite or not bad.all()
                    if bad.any():
                        n_lost += int(np.count_nonzero(t[bad] >= 0))
                        t = np.where(bad, np.int16(IGNORE), t)
                if self.mode == "dense" and not np.any(lab[idx]):
                    continue  # dense: a plane with no label at all is not painted yet
                if np.any(t >= 0):
                    self.planes_used += 1
                    samples.append(Sample(normalize(plane, self.normalization), np.ascontiguousarray(t)))
                    self.sample_keys.append((k, tuple(idx)))
            if not any_finite:
                raise InputError(
                    f"Image {k} has no finite pixel value (all NaN or inf): check the file or how it was made."
                )
            self.channel_axes.append(axis)
        try:
            n_classes, counts = count_classes([s.target for s in samples])
        except InputError as e:
            if n_lost:
                raise InputError(
                    f"{e} ({n_lost} annotated pixels are NaN or inf in the image and were ignored.)"
                ) from e
            raise
        self.class_counts = counts[: n_classes + 1]
        if model is not None:
            if model.in_channels != in_channels:
                raise InputError(f"The model takes {model.in_channels} channels but the images have {in_channels}.")
            if n_classes > model.n_classes:
                raise InputError(
                    f"The annotations have {n_classes} classes but the model predicts {model.n_classes}: "
                    "train a new model for more classes."
                )
            n_classes = model.n_classes
        self.n_classes = n_classes
        self.in_channels = int(in_channels)
        self.data_shapes = [list(np.shape(i)) for i in images]
        self.n_annotated = int(self.class_counts.sum())

        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.train_samples, self.val_blocks = split_validation(samples, cfg.val_fraction, self.rng, cfg.patch_size)
        # pixels held out for validation must not come back as pseudo-labels
        self._held_out = [(s.target >= 0) & (t.target < 0) for s, t in zip(samples, self.train_samples, strict=True)]
        pseudo = cfg.pseudo_labels if cfg.pseudo_labels != "auto" else ("forest" if self.mode == "sparse" else "none")
        self.use_pseudo = pseudo == "forest" and self.mode == "sparse" and cfg.pseudo_weight > 0
        self._pseudo_done = False
        self.pseudo_cache = pseudo_cache
        self.labeler = None  # the PseudoLabeler, once run() has started
        self.forest_val_dice: float | None = None
        self.sampler = PatchSampler(self.train_samples, cfg.patch_size, self.rng)
        contrast = cfg.contrast if cfg.contrast is not None else (1.0 if self.mode == "sparse" else 0.0)
        self.augment = Augmentation(elastic=cfg.elastic, contrast=contrast, blur=cfg.blur) if cfg.augment else None
        self.class_balance = cfg.class_balance if cfg.class_balance is not None else self.mode == "sparse"

        self.device = pick_device(cfg.device)
        self.precision = pick_precision(self.device, cfg.precision)
        if model is None:
            model = UNet(self.in_channels, n_classes, cfg.filters, cfg.depth, cfg.dropout)
        self.model = prepare_module(model, self.device)
        self._optimizer: torch.optim.Optimizer | None = None  # made at the first step (see ``optimizer``)
        self._stop = False
        self.steps = 0
        self.skipped_steps = 0
        self.epochs = 0
        self.last_loss: float | None = None
        self.val_dice: float | None = None
        self.plateau = False
        # set when the budget affords few steps (see _adapt_patch)
        self.small_patch: int | None = None
        self.small_batch: int | None = None
        self._anneal: tuple[int, int, float] | None = None  # (step, length, lr scale) once a plateau is seen
        self._best: float | None = None
        self._since_best = 0
        self._last_fraction = 0.0
        # the budget is the user's wall time: preparing the data counts (run() adds it to its clock)
        self.prepare_seconds = time.perf_counter() - created

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

    def _fraction(self, elapsed: float) -> float:
        cfg = self.config
        parts = []
        if cfg.time_limit is not None:
            parts.append(elapsed / cfg.time_limit)
        if cfg.epochs is not None:
            parts.append(self.steps / (cfg.epochs * cfg.steps_per_epoch))
        return min(1.0, max(parts))

    def train_step(self, fraction: float = 0.0) -> float:
        """One optimizer step on one augmented batch; returns the loss."""
        cfg = self.config
        self.model.train()
        if self.small_patch:
            self.sampler.patch = self.small_patch
        x, y = self.sampler.batch(self.small_batch or cfg.batch_size)
        if self.augment is not None:
            x, y = self.augment(x, y, self.generator)
        x = x.to(self.device, memory_format=torch.channels_last)
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
        return float(loss.detach())

    def _undo_step(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for b, old in zip(self.model.buffers(), saved, strict=True):
                b.copy_(old)
        self.optimizer.zero_grad(set_to_none=True)

    def _pseudo_deadline(self, start: float) -> float:
        cfg = self.config
        if cfg.time_limit is None:
            return math.inf
        return start + cfg.pseudo_time * cfg.time_limit

    def prepare(self, deadline: float = math.inf) -> Iterator[Preparing]:
        """Pseudo-labels for the scribbled planes (see ``pseudo.PseudoLabeler``), tile by tile until done, the
        deadline or ``stop()``; yields progress. Unlabelled tiles keep their strokes only. Done once."""
        if self._pseudo_done or not self.use_pseudo:
            return
        from .pseudo import PseudoCache, PseudoLabeler, merge

        self._pseudo_done = True
        self._stroke_samples = list(self.train_samples)
        if self.pseudo_cache is None:
            self.pseudo_cache = PseudoCache()
        self.labeler = labeler = PseudoLabeler(
            [s.image for s in self.train_samples],
            [s.target for s in self.train_samples],
            self.n_classes,
            self.config.seed,
            self.config.pseudo_confidence,
            self.pseudo_cache,
            should_stop=lambda: self._stop,
        )
        started = time.perf_counter()
        for _ in labeler.run(deadline):
            yield Preparing(labeler.tiles_done, labeler.tiles_total, time.perf_counter() - started)
        self.train_samples = [
            Sample(s.image, merge(s.target, dense, held))
            for s, dense, held in zip(self._stroke_samples, labeler.dense, self._held_out, strict=True)
        ]
        self.sampler = PatchSampler(self.train_samples, self.config.patch_size, self.rng)
        self.forest_val_dice = self._blocks_dice([labeler.dense[b.sample][b.where] for b in self.val_blocks])

    def pseudo_labels_in(self, image: int, plane: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int]):
        """The pseudo-labels (class labels, 0 where there are none) of a box of one plane, or None where that
        plane has none: the forest's answer, shown as the first preview while the U-Net starts learning."""
        if self.labeler is None or (image, tuple(plane)) not in self.sample_keys:
            return None
        dense = self.labeler.dense[self.sample_keys.index((image, tuple(plane)))]
        box = dense[rows[0] : rows[1], cols[0] : cols[1]]
        if not np.any(box >= 0):
            return None
        return np.clip(box, 0, None).astype(np.uint8)

    def refresh_pseudo_labels(self, deadline: float = math.inf) -> None:
        """Self-training: new pseudo-labels from the U-Net's own confident pixels, snapped to edges, on the tiles
        that have pseudo-labels, until the deadline or ``stop()``."""
        from ..prediction import predict_proba_plane
        from .pseudo import merge, outer_box, snap_to_edges, tile_boxes

        if self.labeler is None:
            return
        merged = []
        for i, (strokes, held) in enumerate(zip(self._stroke_samples, self._held_out, strict=True)):
            dense = self.labeler.dense[i].copy()
            image = strokes.image
            h, w = dense.shape
            for y0, y1, x0, x1 in tile_boxes(h, w):
                if self._stop or time.perf_counter() > deadline or not np.any(dense[y0:y1, x0:x1] >= 0):
                    continue
                oy0, oy1, ox0, ox1 = outer_box((y0, y1, x0, x1), h, w)
                crop = np.ascontiguousarray(image[:, oy0:oy1, ox0:ox1])
                probs = predict_proba_plane(
                    self.model, crop, tile_size=max(crop.shape[1:]) + 16, overlap=0, device=self.device,
                    precision=self.precision,
                )  # fmt: skip
                if probs.shape[0] == 1:
                    probs = np.concatenate([1 - probs, probs])
                inner = (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0))
                dense[y0:y1, x0:x1] = snap_to_edges(
                    image[:, y0:y1, x0:x1], probs[(slice(None), *inner)], strokes.target[y0:y1, x0:x1],
                    self.config.pseudo_confidence,
                )  # fmt: skip
            merged.append(Sample(image, merge(strokes.target, dense, held)))
        self.model.train()
        self.train_samples = merged
        self.sampler = PatchSampler(merged, self.config.patch_size, self.rng)

    def _lr_scale(self, fraction: float) -> float:
        """Warm-up, then cosine decay over the run; after a plateau, a short cosine annealing to the floor."""
        cfg = self.config
        warm = 1.0 if cfg.schedule_start > 0 else min(1.0, (self.steps + 1) / 10)
        where = cfg.schedule_start + (1 - cfg.schedule_start) * fraction
        scale = cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * where))
        if self._anneal is not None:
            at, length, from_scale = self._anneal
            k = min(1.0, (self.steps - at) / length)
            floor = cfg.min_lr_fraction
            scale = min(scale, floor + (from_scale - floor) * 0.5 * (1 + math.cos(math.pi * k)))
        return warm * scale

    def _set_lr(self, fraction: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * self._lr_scale(fraction)

    def _check_plateau(self, epoch_loss: float) -> None:
        """Track the best held-out Dice (or, without validation, the epoch loss); a plateau starts the annealing."""
        cfg = self.config
        if not cfg.until_plateau or cfg.epochs is not None or self._anneal is not None:
            return  # a number of epochs asked for is trained in full
        score = self.val_dice if self.val_dice is not None else -epoch_loss
        margin = 0.005 if self.val_dice is not None else 0.02 * abs(epoch_loss)
        if self._best is None or score > self._best + margin:
            self._best, self._since_best = score, 0
        else:
            self._since_best += 1
        if self._since_best >= cfg.patience and self.steps >= cfg.min_steps:
            length = max(3 * cfg.steps_per_epoch, self.steps // 4)
            self._anneal = (self.steps, length, self._lr_scale(self._last_fraction))
            self.plateau = True

    def run(self) -> Iterator[Event]:
        cfg = self.config
        # the clock starts when the Trainer was created: preparing the data is part of the user's wait
        start = time.perf_counter() - self.prepare_seconds
        if self.use_pseudo:
            yield from self.prepare(self._pseudo_deadline(start))
            labeler = self.labeler
            yield Prepared(
                time.perf_counter() - start,
                labeler.tiles_done if labeler else 0,
                labeler.tiles_total if labeler else 0,
                self.forest_val_dice,
            )
        refresh = self.use_pseudo and cfg.self_training > 0
        epoch_losses: list[float] = []
        elapsed = time.perf_counter() - start
        bad_in_a_row = 0
        step_seconds = 0.0  # recent step duration, so the last step does not overrun the budget
        val_seconds = 0.0  # the last validation's duration: one more runs after the last step
        while not self._stop:
            fraction = self._fraction(elapsed)
            self._last_fraction = fraction
            if fraction >= 1.0 or (self._anneal is not None and self.steps >= self._anneal[0] + self._anneal[1]):
                break
            if cfg.time_limit is not None and self.steps and elapsed + step_seconds + val_seconds > cfg.time_limit:
                break  # the next step (and the last validation) would end past the budget: the user's wall time
            if refresh and (fraction >= cfg.self_training or self._anneal is not None) and self._may_self_train():
                refresh = False
                # self-training gets at most a tenth of the budget that is left
                left = (cfg.time_limit - elapsed) / 10 if cfg.time_limit is not None else math.inf
                self.refresh_pseudo_labels(time.perf_counter() + left)
            step_start = time.perf_counter()
            loss = self.train_step(fraction)
            took = time.perf_counter() - step_start
            step_seconds = took if not self.steps or step_seconds == 0 else 0.8 * step_seconds + 0.2 * took
            if self.steps == 2:  # the first step pays one-off costs (kernels, the optimizer's imports): not it
                self._adapt_patch(time.perf_counter() - start, took)
            if not math.isfinite(loss):
                bad_in_a_row += 1
                elapsed = time.perf_counter() - start
                if bad_in_a_row == 1:
                    warnings.warn(
                        f"After step {self.steps} the loss was not finite (NaN or inf): the step was skipped and "
                        "the model keeps its weights; if this persists, lower the learning rate.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                if bad_in_a_row >= MAX_BAD_STEPS:
                    warnings.warn(
                        f"Training stopped: the loss was not finite for {MAX_BAD_STEPS} steps in a row; the model "
                        f"keeps the weights of step {self.steps}. Lower the learning rate or check the images.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self._stop = True
                continue
            bad_in_a_row = 0
            self.last_loss = loss
            epoch_losses.append(loss)
            elapsed = time.perf_counter() - start
            yield Step(self.steps, self.epochs, loss, elapsed, self._fraction(elapsed))
            if self.steps % cfg.steps_per_epoch == 0:
                self.epochs += 1
                val_start = time.perf_counter()
                self.val_dice = self.validate()
                val_seconds = time.perf_counter() - val_start
                epoch_loss = float(np.mean(epoch_losses))
                self._check_plateau(epoch_loss)
                elapsed = time.perf_counter() - start
                yield Epoch(self.epochs, self.steps, epoch_loss, self.val_dice, elapsed, self._fraction(elapsed))
                epoch_losses = []
        if self.steps % cfg.steps_per_epoch and self.val_blocks:
            self.val_dice = self.validate()
        model = self.finish(time.perf_counter() - start)
        yield Done(
            model,
            self.steps,
            self.epochs,
            time.perf_counter() - start,
            self.last_loss,
            self.val_dice,
            self._stop,
            self.skipped_steps,
            self.plateau,
            self.forest_val_dice,
        )

    def _adapt_patch(self, elapsed: float, step_seconds: float) -> None:
        """Called after the second step, with its duration (the first pays one-off costs). A budget that
        affords fewer than ``SHORT_RUN_STEPS`` steps (10 s on an AVX2 CPU: ~20 steps of 8 x 128 px) trains on
        patches of half the side and half the batch instead: eight times the steps, which a few seconds need
        more than context (8.5 s on 2048 x 2048 with scribbles, AVX2 fp32, 6 seeds: Dice 0.61 on average with
        half the side alone, 0.76 with half the batch too; 0.19-0.35 before). Runs that afford more are
        unchanged."""
        cfg = self.config
        if cfg.time_limit is None or step_seconds <= 0:
            return
        affordable = (cfg.time_limit - elapsed) / step_seconds
        smaller = cfg.patch_size // 2
        if affordable < SHORT_RUN_STEPS and smaller >= 2 ** (getattr(self.model, "depth", 4) + 1):
            self.small_patch = smaller
            self.small_batch = max(2, cfg.batch_size // 2)  # batch norm needs a few samples

    def _may_self_train(self) -> bool:
        """Self-training replaces the forest's pseudo-labels by the U-Net's own: only once the U-Net is at least
        as good on the held-out strokes (or, without them, after ``SELF_TRAIN_MIN_STEPS``). A U-Net that is
        still behind (a short budget on a slow CPU: 45 steps in 30 s) would otherwise learn its own mistakes:
        Dice 0.35 after 30 s on a 2048 x 2048 plane with scribbles (AVX2 fp32), 0.73 with this wait."""
        if self.steps < SELF_TRAIN_MIN_STEPS // 2:
            return False
        if self.val_dice is None or self.forest_val_dice is None:
            return self.steps >= SELF_TRAIN_MIN_STEPS
        return self.val_dice >= self.forest_val_dice

    def _blocks_dice(self, predictions: list[np.ndarray]) -> float | None:
        """Dice (mean over foreground classes) of class labels on the held-out blocks; None without blocks or
        where a prediction is missing (-1: e.g. a tile the forest did not reach)."""
        if not self.val_blocks:
            return None
        n_scored = 1 if self.instances else self.n_classes  # a boundary model is scored on its foreground
        inter = np.zeros(n_scored)
        denom = np.zeros(n_scored)
        for b, sub in zip(self.val_blocks, predictions, strict=True):
            valid = (b.target >= 0) & (sub >= 0)
            tgt = np.minimum(b.target, 1) if self.instances else b.target
            sub = np.minimum(sub, 1) if self.instances else sub
            for c in range(1, n_scored + 1):
                pc, tc = (sub == c) & valid, (tgt == c) & valid
                inter[c - 1] += np.count_nonzero(pc & tc)
                denom[c - 1] += np.count_nonzero(pc) + np.count_nonzero(tc)
        present = denom > 0
        return float(np.mean(2 * inter[present] / denom[present])) if present.any() else None

    @torch.inference_mode()
    def validate(self) -> float | None:
        """Dice (mean over foreground classes) on the held-out annotated blocks."""
        if not self.val_blocks:
            return None
        self.model.eval()
        predictions = []
        for start in range(0, len(self.val_blocks), 8):
            chunk = self.val_blocks[start : start + 8]
            x = torch.from_numpy(np.stack([b.window for b in chunk])).to(self.device)
            with autocast(self.device, self.precision):
                logits = self.model(x.contiguous(memory_format=torch.channels_last)).float()
            pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            predictions += [pr[b.inner] for b, pr in zip(chunk, pred.cpu().numpy(), strict=True)]
        return self._blocks_dice(predictions)

    def finish(self, elapsed: float = 0.0) -> UNet:
        """The model in eval mode with everything needed to reuse it recorded in ``model.meta``."""
        model = self.model.eval()
        history = list(model.meta.get("training", {}).get("history", []))
        history.append(
            {
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "steps": self.steps,
                "seconds": round(elapsed, 2),
                "loss": self.last_loss,
                "val_dice": self.val_dice,
                "data_shapes": self.data_shapes,
                "annotated_pixels": self.n_annotated,
                "label_mode": self.mode,
            }
        )
        model.meta.update(
            {
                "normalization": self.normalization,
                "label_mode": self.mode,
                "multiclass": self.config.multiclass,
                "instances": "boundary" if self.instances else None,
                "object_size": self.object_size,
                VERSION: __version__,
                "training": {
                    "config": dataclasses.asdict(self.config),
                    "history": history,
                    "steps": sum(h["steps"] for h in history),
                },
            }
        )
        return model

    def snapshot(self) -> UNet:
        """A CPU copy of the current model in eval mode, e.g. for a live preview or saving mid-run."""
        model = copy.deepcopy(self.model).to("cpu").eval()
        model.meta = copy.deepcopy(self.model.meta)
        model.meta.setdefault("normalization", self.normalization)
        model.meta.setdefault("label_mode", self.mode)
        if self.instances:  # previews show the foreground, not the boundary class
            model.meta["instances"] = "boundary"
        return model


def _learn_instances(cfg: TrainConfig, mode: str, labels: list[np.ndarray], model: UNet | None) -> bool:
    """Whether to train the boundary target (see ``TrainConfig.instances``)."""
    from ..labels import is_instance_labels

    possible = mode == "dense" and not cfg.multiclass
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
        return model.meta.get("instances") == "boundary"
    return any(is_instance_labels(lab) for lab in labels)


def _object_size(mode: str, instances: bool, labels: list[np.ndarray], model: UNet | None) -> float | None:
    """Typical object diameter from scribbles or instance masks (see instances.py); a fine-tuned model keeps
    its own otherwise."""
    from ..instances import object_size_from_masks, object_size_from_strokes

    size = None
    if mode == "sparse" or instances:
        measure = object_size_from_strokes if mode == "sparse" else object_size_from_masks
        found = [s for s in (measure(lab) for lab in labels) if s]
        size = float(np.median(found)) if found else None
    if size is None and model is not None:
        size = model.meta.get("object_size")
    return size


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
