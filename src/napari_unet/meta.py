"""Every key of ``model.meta`` (what kind of model it is, how it was trained) and its checks: one home.

A model file carries, beside its weights and architecture, the metadata that prediction, fine-tuning,
the widgets and the export rely on. Writers (``training``) and readers (``prediction``, ``checkpoint``,
``export``, the widgets) name the keys through this module, never as string literals.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

NORMALIZATION = "normalization"  # the percentile rule of normalization.py, repeated at prediction
LABEL_MODE = "label_mode"  # 'sparse' (scribbles) or 'dense' (complete masks): how the model was taught
MULTICLASS = "multiclass"  # dense labels were class ids
INSTANCES = "instances"  # BOUNDARY for a model trained on instance masks (3 classes), else None
BOUNDARY = "boundary"
OBJECT_SIZE = "object_size"  # typical object diameter in pixels (instances.py), or None
VERSION = "napari_unet_version"
TRAINING = "training"  # {"config": ..., "history": [one entry per run], "steps": total}
VERDICT = "verdict"  # {"word": 'ok' | 'poor' | 'useless', "reason": ...} of the last run (training/verdict.py)
VOLUME = "volume"  # {"anisotropy": Z / XY spacing} for a volume (3D) model; absent for a 2D model


def _meta(model_or_meta) -> dict:
    if isinstance(model_or_meta, dict):
        return model_or_meta
    return getattr(model_or_meta, "meta", None) or {}


def normalization_rule(model_or_meta) -> dict | None:
    """The normalization the model was trained with (None: the default rule)."""
    return _meta(model_or_meta).get(NORMALIZATION)


def object_size(model_or_meta) -> float | None:
    return _meta(model_or_meta).get(OBJECT_SIZE)


def learns_boundaries(model_or_meta) -> bool:
    """Whether the metadata says the model was trained on instance masks (boundary classes)."""
    return _meta(model_or_meta).get(INSTANCES) == BOUNDARY


def history(model_or_meta) -> list[dict[str, Any]]:
    """One entry per training run of this model (steps, seconds, val Dice, ...), oldest first."""
    return list(_meta(model_or_meta).get(TRAINING, {}).get("history", []))


def total_steps(model_or_meta) -> int:
    """Every step the model has had, over all its runs."""
    return sum(int(h.get("steps") or 0) for h in history(model_or_meta))


def total_seconds(model_or_meta) -> float:
    return float(sum(h.get("seconds", 0) or 0 for h in history(model_or_meta)))


def last_val_dice(model_or_meta) -> float | None:
    runs = history(model_or_meta)
    return runs[-1].get("val_dice") if runs else None


def record_verdict(meta: dict, word: str, reason: str) -> dict:
    """The last run's verdict on the model ('ok', 'poor', 'useless'), with its reason."""
    meta[VERDICT] = {"word": word, "reason": reason}
    return meta


def verdict(model_or_meta) -> tuple[str, str] | None:
    """(word, reason) of the last run's verdict, or None for a model from before verdicts were recorded."""
    found = _meta(model_or_meta).get(VERDICT)
    if not isinstance(found, dict) or "word" not in found:
        return None
    return str(found["word"]), str(found.get("reason", ""))


def check_meta(meta: dict) -> None:
    """The parts of the metadata that prediction and fine-tuning rely on."""
    rule = meta.get(NORMALIZATION)
    if rule is not None:
        ok = isinstance(rule, dict) and rule.get("method") == "percentile"
        low, high = (rule.get("low"), rule.get("high")) if ok else (None, None)
        nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not (ok and nums and 0 <= low < high <= 100):
            raise ValueError(f"normalization must be percentile with 0 <= low < high <= 100, got {rule!r}"[:200])
    if meta.get(LABEL_MODE, "dense") not in ("sparse", "dense"):
        raise ValueError(f"label_mode must be 'sparse' or 'dense', got {meta.get(LABEL_MODE)!r}"[:200])
    if not isinstance(meta.get(MULTICLASS, False), bool):
        raise ValueError("multiclass must be true or false")
    training = meta.get(TRAINING, {})
    if not isinstance(training, dict) or not isinstance(training.get("history", []), list):
        raise ValueError("training must be a mapping with a history list")


def predicts_boundaries(model) -> bool:
    """Whether the model was trained on instance masks (background / interior / boundary classes)."""
    return learns_boundaries(model) and getattr(model, "out_channels", 0) == 3


def run_entry(
    *,
    steps: int,
    seconds: float,
    loss: float | None,
    val_dice: float | None,
    data_shapes: list,
    annotated_pixels: int,
    label_mode: str,
) -> dict:
    """One entry of the training history: what a run did, on what."""
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "steps": steps,
        "seconds": round(seconds, 2),
        "loss": loss,
        "val_dice": val_dice,
        "data_shapes": data_shapes,
        "annotated_pixels": annotated_pixels,
        "label_mode": label_mode,
    }


def record_run(
    meta: dict,
    *,
    normalization: dict,
    label_mode: str,
    multiclass: bool,
    boundaries: bool,
    object_size: float | None,
    config: dict,
    run: dict,
    version: str,
) -> dict:
    """``meta`` updated after a training run: what the model is, and one more entry in its history."""
    runs = [*history(meta), run]
    meta.update(
        {
            NORMALIZATION: normalization,
            LABEL_MODE: label_mode,
            MULTICLASS: multiclass,
            INSTANCES: BOUNDARY if boundaries else None,
            OBJECT_SIZE: object_size,
            VERSION: version,
            TRAINING: {"config": config, "history": runs, "steps": sum(h["steps"] for h in runs)},
        }
    )
    return meta


def preview_meta(meta: dict, *, normalization: dict, label_mode: str, boundaries: bool) -> dict:
    """A copy's ``meta`` during training (a live preview, a save mid-run): enough to predict with it."""
    meta.setdefault(NORMALIZATION, normalization)
    meta.setdefault(LABEL_MODE, label_mode)
    if boundaries:  # previews show the foreground, not the boundary class
        meta[INSTANCES] = BOUNDARY
    return meta


def record_volume(meta: dict, anisotropy: float) -> dict:
    """``meta`` of a volume model: it segments Z-stacks as 3D objects, for voxels of this anisotropy."""
    meta[VOLUME] = {"anisotropy": float(anisotropy)}
    return meta


def volume_anisotropy(model_or_meta) -> float | None:
    """The anisotropy a volume model was trained for; None for a 2D model."""
    volume = _meta(model_or_meta).get(VOLUME)
    return float(volume["anisotropy"]) if isinstance(volume, dict) and "anisotropy" in volume else None
