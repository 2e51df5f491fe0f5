"""Model files: one file with weights, architecture, normalization, label convention and training record.

Files are written atomically and loaded with ``torch.load(weights_only=True)``: a model file from
another lab is untrusted input, and loading it can never run code. Metadata travels as JSON text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .errors import InputError
from .io import atomic_path
from .model import UNet

FORMAT = "napari-unet-model"
FORMAT_VERSION = 1


def save_model(model: UNet, path: str | Path, overwrite: bool = False) -> Path:
    """Save to ``path`` (conventionally ``.pt``); an existing file is kept unless ``overwrite``."""
    if not isinstance(model, UNet):
        raise InputError(f"save_model takes a UNet, got {type(model).__name__}.")
    p = Path(path)
    if p.parent and not p.parent.exists():
        raise InputError(f"The folder {p.parent} does not exist; create it or choose another path.")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config),
        "meta": json.dumps(model.meta, default=str),
        "state_dict": {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()},
    }
    try:
        with atomic_path(p, overwrite) as tmp, open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise InputError(f"Cannot write the model file {p}: {e.strerror or e}; choose another path.") from e
    return p


def load_model(path: str | Path) -> UNet:
    """Load a model saved by ``save_model``; junk, damaged or foreign files raise ``InputError``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such model file; check the path.")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # zip errors, unpickling refusals, truncation: all mean "not a model file"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputError(f"{p} is not a napari-unet model file, or it is damaged ({reason}).") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{p} is a PyTorch file but not a napari-unet model; train one with napari-unet train.")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{p} was written by a newer napari-unet (format {version}); upgrade napari-unet to load it.")
    try:
        config = json.loads(payload["config"])
        meta = json.loads(payload["meta"])
        state = payload["state_dict"]
        if not isinstance(config, dict) or not isinstance(meta, dict) or not isinstance(state, dict):
            raise TypeError("config, meta and state_dict must be mappings")
        known = {"in_channels", "n_classes", "filters", "depth", "dropout"}
        if set(config) - known:
            raise TypeError(f"unknown architecture keys {sorted(set(config) - known)}")
        model = UNet(**config)
        model.load_state_dict(state, strict=True)
    except InputError as e:
        raise InputError(f"{p}: the model file describes an invalid network ({e}).") from e
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0][:200]
        raise InputError(f"{p}: the model file is incomplete or inconsistent ({reason}).") from e
    model.meta = meta
    return model.eval()
