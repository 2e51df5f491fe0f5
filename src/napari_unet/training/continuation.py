"""Continuing a model with new annotations: where it was wrong counts more, and the better of before and after
is kept.

A round of corrections must help or do no harm. Before training, the starting model is scored on the run's
held-out blocks (which include the new annotations) and its mistakes on the annotated pixels are found;
training patches then centre on those pixels ``TrainConfig.correction_weight`` times as often as on one
class's pixels (a pixel seen more often weighs more in the loss). At the end the trained model is scored on
the same blocks; when it is worse, or when the run was stopped after too few steps to judge, the starting
weights come back (into the same model object, so a caller's reference is restored too). With scribbles, a
model that has had some training gives its own pseudo-labels (``own_pseudo_labels``): only the new strokes
change them, where they lie.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np

from ..labels import PSEUDO
from .config import SELF_TRAIN_MIN_STEPS, TRUSTED_STEPS


@dataclass(frozen=True)
class Verdict:
    """Which model a continued run keeps, and the two held-out scores that decided it."""

    kept_previous: bool
    before: float | None  # the starting model's Dice on the run's held-out blocks
    after: float | None  # the trained model's, on the same blocks

    def words(self) -> str:
        """One plain sentence for the CLI and the widget."""
        scores = f" (held-out Dice {_fmt(self.before)} before, {_fmt(self.after)} after)"
        if self.kept_previous:
            return "Kept the previous model: this run did not improve it" + scores + "."
        return "Kept the newly trained model" + scores + "."


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def keep_previous(steps: int, stopped: bool, before: float | None, after: float | None) -> bool:
    """Whether the starting model beats the run: no step at all, a lower held-out score, or (without scores)
    a run stopped before ``TRUSTED_STEPS`` steps, too short to have learnt anything it could be trusted with."""
    if steps == 0:
        return True
    if before is not None and after is not None:
        return after < before
    return stopped and steps < TRUSTED_STEPS


def wrong_pixels(model, samples, boundaries: bool, device, precision: str) -> list[np.ndarray]:
    """Per sample, the annotated pixels (strokes or masks, not pseudo-labels) the model labels wrongly."""
    from ..meta import predicts_boundaries
    from ..prediction import predict_proba_plane, probabilities_to_labels

    wrong = []
    for s in samples:
        annotated = (s.target >= 0) & (s.target < PSEUDO)
        if not annotated.any():
            wrong.append(annotated)
            continue
        probs = predict_proba_plane(model, s.image, device=device, precision=precision)
        predicted = probabilities_to_labels(probs, boundary=predicts_boundaries(model)).astype(np.int16)
        truth = np.minimum(s.target, 1) if boundaries else s.target
        wrong.append(annotated & (predicted != truth))
    return wrong


MAX_FOCUS_PIXELS = 1 << 22  # above this many training pixels the mistakes are not searched (a full prediction)


class Continuation:
    """The starting model of a continued run: a copy of its weights and record, its score, its mistakes."""

    def __init__(self, model, average_decay: float = 0.0) -> None:
        self.previous = copy.deepcopy(model).eval()
        self.before: float | None = None
        self.focus: list[np.ndarray] | None = None
        self.average = WeightAverage(model, average_decay) if average_decay > 0 else None

    def start(self, trainer) -> None:
        """Score the starting model on the held-out blocks and find its mistakes on the training pixels."""
        self.before = score(trainer, self.previous)
        pixels = sum(s.target.size for s in trainer.train_samples)
        # volumes keep their 3D sampler (no held-out blocks, no mistake search yet): the copy still guards
        # against a run stopped early
        if trainer.config.correction_weight > 0 and pixels <= MAX_FOCUS_PIXELS and not trainer.config.volume:
            self.focus = wrong_pixels(
                self.previous, trainer.train_samples, trainer.boundaries, trainer.device, trainer.precision
            )

    def settle(self, model, steps: int, stopped: bool, after: float | None) -> Verdict:
        """Keep ``model`` or put the starting weights and record back into it; says which."""
        kept = keep_previous(steps, stopped, self.before, after)
        if kept:
            model.load_state_dict(self.previous.state_dict())
            model.meta = copy.deepcopy(getattr(self.previous, "meta", {}))
            model.eval()
        return Verdict(kept, self.before, after)


class WeightAverage:
    """An exponential moving average of a model's floating weights and buffers, updated after each step.

    The end of a short run is one noisy point of its trajectory (the last batches move it); the average of its
    last steps is a steadier model (Polyak averaging, as ``torch.optim.swa_utils``' EMA). The decay warms
    up as (1 + n) / (10 + n) after n steps (as TensorFlow's ``ExponentialMovingAverage``), so a run of a few steps
    is not averaged back to where it started.
    """

    def __init__(self, model, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.tensors = [t.detach().clone() for t in model.state_dict().values() if t.is_floating_point()]

    def update(self, model) -> None:
        import torch

        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = [t.detach() for t in model.state_dict().values() if t.is_floating_point()]
        with torch.no_grad():
            torch._foreach_lerp_(self.tensors, current, 1.0 - decay)

    def copy_to(self, model) -> None:
        import torch

        with torch.no_grad():
            for t, a in zip(
                (t for t in model.state_dict().values() if t.is_floating_point()), self.tensors, strict=True
            ):
                t.copy_(a)


def follow(trainer) -> None:
    """After each step of a continued run: the running average of its weights follows (``WeightAverage``)."""
    cont = getattr(trainer, "continuation", None)
    if cont is not None and cont.average is not None:
        cont.average.update(trainer.model)


def blend(trainer) -> bool:
    """At the end of a continued run's steps: its weights become the average of the trained and the starting
    weights (``TrainConfig.blend_previous`` of the start); whether they did. The trained weights are the running
    average of its last steps where ``TrainConfig.average_decay`` > 0.

    A few new strokes pull the whole network towards them for a fix that is local: averaging the weights keeps
    the fix and what the starting model knew (weight-space ensembling of a fine-tuned model with its start,
    "WiSE-FT", Wortsman et al. 2022). Measured on 3 rounds of 5 correcting strokes
    (benchmarks/correction_rounds.py, README "Correct and retrain"): without it rounds lost up to 0.046 Dice on
    unseen data (a lower learning rate did not help); averaged, with 0.7 of the start, at most 0.007.
    """
    cont = getattr(trainer, "continuation", None)
    share = trainer.config.blend_previous
    if cont is None or trainer.steps == 0 or (share <= 0 and cont.average is None):
        return False
    if cont.average is not None:
        cont.average.copy_to(trainer.model)
    if share > 0:
        blend_weights(trainer.model, cont.previous, share)
    return True


def blend_weights(model, previous, share: float) -> None:
    """``model``'s floating weights and buffers become (1 - share) x its own + share x ``previous``'s."""
    import torch

    old = previous.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                value.lerp_(old[name].to(value.device, value.dtype), share)


def score(trainer, model) -> float | None:
    """Any model's Dice on ``trainer``'s held-out blocks (the starting model's, to compare with)."""
    from .validation import blocks_dice, predict_blocks

    if not trainer.val_blocks:
        return None
    predictions = predict_blocks(model, trainer.val_blocks, trainer.device, trainer.precision)
    return blocks_dice(trainer.val_blocks, predictions, trainer.n_classes, trainer.boundaries)


def begin(trainer):
    """At the start of ``trainer.run()``: a model that has been trained before is continued, so keep a copy of
    it, score it and find its mistakes (``trainer.continuation``); returns the patch sampler to train with."""
    from ..meta import history, total_steps

    trainer.continuation = None
    if trainer.steps == 0 and history(trainer.model):
        trainer.continuation = Continuation(trainer.model, trainer.config.average_decay)
        trainer.continuation.start(trainer)
        trained = total_steps(trainer.model) >= SELF_TRAIN_MIN_STEPS  # a few steps' labels are worse than the forest's
        if trainer.use_pseudo and trainer.config.pseudo_labels == "auto" and trainer.labeler is None and trained:
            own_pseudo_labels(trainer)
    return trainer.sampler if trainer.config.volume else sampler_for(trainer)


@dataclass
class OwnLabels:
    """The pseudo-labels of a continued model (what ``Trainer.labeler`` holds otherwise: the forest's)."""

    dense: list[np.ndarray]  # per sample: -1 none, else the class
    tiles_done: int = 0
    tiles_total: int = 0


def own_pseudo_labels(trainer) -> None:
    """Scribbles on a continued model (of ``SELF_TRAIN_MIN_STEPS`` steps or more, as for self-training): its own
    confident pixels, snapped to edges, are the pseudo-labels (the new strokes override them where they lie), not
    a forest refit from the strokes alone. Continuing on the forest's
    labels pulled a model that was better than the forest back towards it (benchmarks/correction_rounds.py)."""
    import math
    import time

    from .selftrain import self_trained_samples

    cfg = trainer.config
    strokes = trainer.train_samples  # before any pseudo-label: the strokes less the held-out blocks
    held = [(s.target >= 0) & (t.target < 0) for s, t in zip(trainer.data.samples, strokes, strict=True)]
    budget = cfg.pseudo_time * cfg.time_limit if cfg.time_limit is not None else math.inf
    merged = self_trained_samples(
        trainer.continuation.previous, [np.zeros(s.target.shape, np.int16) for s in strokes], strokes, held, cfg,
        trainer.device, trainer.precision, lambda: False, time.perf_counter() + budget,
    )  # fmt: skip
    dense = [np.where(m.target >= PSEUDO, m.target - PSEUDO, m.target).astype(np.int16) for m in merged]
    trainer.labeler = OwnLabels(dense, len(dense), len(dense))
    trainer.train_samples = merged


def sampler_for(trainer):
    """A patch sampler over the trainer's samples that favours a continued model's mistakes."""
    from .patches import PatchSampler

    cont = getattr(trainer, "continuation", None)
    sampler = PatchSampler(trainer.train_samples, trainer.config.patch_size, trainer.rng)
    return sampler.focus_on(cont.focus if cont is not None else None, trainer.config.correction_weight)


def settle(trainer, done):
    """``done`` of a continued run, with the model it keeps (the trained one, or the starting weights back where
    the run did not beat them; ``TrainConfig.keep_better``) and the two held-out scores that decided."""
    from .verdict import verdict_fields  # imports torch: not at module import (the widgets import this module)

    cont = getattr(trainer, "continuation", None)
    if cont is None:
        return done
    if not trainer.config.keep_better:
        return dataclasses.replace(done, previous_val_dice=cont.before, trained_val_dice=done.val_dice)
    verdict = cont.settle(done.model, done.steps, done.stopped, done.val_dice)
    return dataclasses.replace(
        done,
        val_dice=verdict.before if verdict.kept_previous else done.val_dice,
        kept_previous=verdict.kept_previous,
        previous_val_dice=verdict.before,
        trained_val_dice=verdict.after,
        **(verdict_fields(done.model) if verdict.kept_previous else {}),  # the kept model's own verdict
    )


def kept_words(done) -> str:
    """What a continued run's ``Done`` kept, in one plain sentence."""
    return Verdict(done.kept_previous, done.previous_val_dice, done.trained_val_dice).words()
