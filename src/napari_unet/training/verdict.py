"""Whether a finished run gave a usable model: 'ok', 'poor' (held-out Dice below a floor) or 'useless' (one
class everywhere). A useless model must not be passed off as a result: the CLI exits with ``POOR_MODEL_EXIT``
after saving, the model file records the verdict (``meta.VERDICT``), and prediction repeats the warning.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .config import MIN_USEFUL_DICE
from .patches import Sample

OK, POOR, USELESS = "ok", "poor", "useless"
CHECK_SIDE = 512  # the one-class check predicts at most this many pixels per side of one annotated plane
VOLUME_CHECK_DEPTH = 32  # planes of a volume it predicts (and CHECK_SIDE / 4 a side): the model pads them


class PoorModelWarning(UserWarning):
    """Prediction with a model whose training verdict was 'poor' or 'useless'."""


def model_warning(model) -> str | None:
    """The plain sentence prediction repeats for a model recorded as poor or useless; None for the others."""
    from ..meta import verdict

    found = verdict(model)
    if found is None or found[0] == OK:
        return None
    word, reason = found
    return f"This model was judged {word} when it was trained: {reason} Its predictions are not to be relied on."


def verdict_fields(model) -> dict[str, str]:
    """``Done``'s verdict fields from what the model's metadata records (empty for a model without a verdict)."""
    from ..meta import verdict

    found = verdict(model)
    return {} if found is None else {"verdict": found[0], "verdict_reason": found[1]}


def warn_if_poor(model, stacklevel: int = 3) -> None:
    """``warnings.warn`` the model's recorded verdict once per model (Python shows each message once per place)."""
    import warnings

    text = model_warning(model)
    if text is not None:
        warnings.warn(text, PoorModelWarning, stacklevel=stacklevel)


class Verdict(NamedTuple):
    word: str  # OK, POOR or USELESS
    reason: str = ""  # a plain sentence for the non-ok ones

    @property
    def ok(self) -> bool:
        return self.word == OK


def judge(val_dice: float | None, classes: tuple[set[int], set[int]] | None, floor: float = MIN_USEFUL_DICE) -> Verdict:
    """The verdict from the held-out Dice and (annotated, predicted) classes of one plane (None: not checked)."""
    if classes is not None:
        annotated, predicted = classes
        if len(annotated) > 1 and len(predicted) == 1:
            what = "background" if predicted == {0} else f"class {next(iter(predicted))}"
            return Verdict(
                USELESS,
                f"the model labels every pixel {what}: it learnt nothing usable (was the CPU busy, or the run too "
                "short?). Train again for longer.",
            )
    if val_dice is not None and val_dice < floor:
        return Verdict(
            POOR,
            f"its Dice on held-out annotations is {val_dice:.2f}, below {floor:g}: train longer or annotate more.",
        )
    return Verdict(OK)


def judge_trainer(trainer) -> Verdict:
    """A finished ``Trainer``'s verdict: its held-out Dice, and the classes its model predicts on the most
    annotated plane."""
    t = trainer
    return judge(t.val_dice, plane_classes(t.model, t.data.samples, t.device, t.precision, t.boundaries))


def plane_classes(model, samples: list[Sample], device, precision: str, boundaries: bool) -> tuple[set, set] | None:
    """(annotated, predicted) classes on a crop of the most annotated plane (at most ``CHECK_SIDE`` px a side,
    centred on its annotation); None without annotation.

    A boundary model is compared on its foreground (interior and boundary are one object class here)."""
    import torch

    from ..runtime import autocast

    if not samples or not any((s.target >= 0).any() for s in samples):
        return None
    sample = max(samples, key=lambda s: int(np.count_nonzero(s.target >= 0)))
    box = _crop_around_annotation(sample.target, 2 ** getattr(model, "depth", 4))
    if box is None:
        return None
    image, target = sample.image[(slice(None), *box)], sample.target[box]
    model.eval()
    with torch.inference_mode():
        batch = torch.from_numpy(np.ascontiguousarray(image[None])).to(device)
        if batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(batch).float()
    pred = ((logits[0, 0] > 0).long() if logits.shape[1] == 1 else logits[0].argmax(0)).cpu().numpy()
    annotated = target[target >= 0]
    if boundaries:
        pred, annotated = np.minimum(pred, 1), np.minimum(annotated, 1)
    if annotated.size == 0:
        return None
    return set(np.unique(annotated).tolist()), set(np.unique(pred).tolist())


def _crop_around_annotation(target: np.ndarray, multiple: int) -> tuple[slice, ...] | None:
    """A box of at most ``CHECK_SIDE`` px a side in the plane (``VOLUME_CHECK_DEPTH`` planes of a volume) centred
    on the annotation, e.g. strokes; None where the plane is smaller than the network's coarsest grid."""
    if target.ndim == 2 and min(target.shape) < multiple:
        return None
    limits = (VOLUME_CHECK_DEPTH, CHECK_SIDE // 4, CHECK_SIDE // 4) if target.ndim == 3 else (CHECK_SIDE, CHECK_SIDE)
    centre = [int(np.mean(v)) for v in np.nonzero(target >= 0)]
    box = []
    for n, limit, c in zip(target.shape, limits, centre, strict=True):
        side = min(limit, n) if target.ndim == 3 else max(multiple, min(limit, n) // multiple * multiple)
        start = int(np.clip(c - side // 2, 0, max(0, n - side)))
        box.append(slice(start, start + side))
    return tuple(box)
