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
from .meta import check_meta
from .model import UNet
from .packages import is_package, read_package

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
    """Load a model saved by ``save_model``, or a bioimage.io package (zip or folder) that napari-unet exported.

    Junk, damaged or foreign files raise ``InputError``.
    """
    p = Path(path)
    if is_package(p):
        config, meta, state = read_package(p)
        return _build(p, config, meta, state, "package")
    if p.is_dir():
        raise InputError(
            f"{p} is a folder, not a model file: give the .pt file written by napari-unet train "
            "(or a bioimage.io package exported by napari-unet)."
        )
    if not p.is_file():
        raise InputError(f"{p}: no such model file; check the path.")
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty (0 bytes): it was not saved completely; save or train the model again.")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # zip errors, unpickling refusals, truncation: all mean "not a model file"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        reason = " ".join(reason.split())
        raise InputError(
            f"{p} is not a napari-unet model file, or it is damaged ({reason}); use a model saved by napari-unet."
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{p} is a PyTorch file but not a napari-unet model; train one with napari-unet train.")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{p} was written by a newer napari-unet (format {version}); upgrade napari-unet to load it.")
    try:
        config = json.loads(payload["config"])
        meta = json.loads(payload["meta"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as e:
        reason = " ".join(str(e).split())[:200]
        raise InputError(
            f"{p}: the model file is incomplete or inconsistent ({reason}); use a model saved by napari-unet."
        ) from e
    return _build(p, config, meta, state, "model file")


def _build(p: Path, config, meta, state, what: str) -> UNet:
    """The network from checked architecture, metadata and weights."""
    try:
        if not isinstance(config, dict) or not isinstance(meta, dict) or not isinstance(state, dict):
            raise TypeError("config, meta and state_dict must be mappings")
        known = {"in_channels", "n_classes", "filters", "depth", "dropout", "spatial_dims", "anisotropy"}
        if set(config) - known:
            raise TypeError(f"unknown architecture keys {sorted(set(config) - known)}")
        _check_config(config)
        _check_state(config, state)
        check_meta(meta)
        model = UNet(**config)
        model.load_state_dict(state, strict=True)
    except InputError as e:
        raise InputError(f"{p}: the {what} describes an invalid network ({e}).") from e
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise InputError(
            f"{p}: the {what} is incomplete or inconsistent ({reason}); use a model saved by napari-unet."
        ) from e
    model.meta = meta
    return model.eval()


# limits far above any model napari-unet trains, low enough that a hostile file cannot make us allocate much
_LIMITS = {"in_channels": 256, "n_classes": 32, "filters": 512, "depth": 7}


def _check_config(config: dict) -> None:
    """Types and ranges of the architecture, checked before anything is built from it."""
    for key, top in _LIMITS.items():
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ValueError(f"config {key} must be a whole number from 1 to {top}, got {value!r}")
    dropout = config.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"config dropout must be a number in [0, 1), got {dropout!r}")
    dims, anisotropy = config.get("spatial_dims", 2), config.get("anisotropy", 1.0)
    if dims not in (2, 3) or isinstance(dims, bool):
        raise ValueError(f"config spatial_dims must be 2 or 3, got {dims!r}")
    if isinstance(anisotropy, bool) or not isinstance(anisotropy, (int, float)) or not 0.1 <= anisotropy <= 100:
        raise ValueError(f"config anisotropy must be a number from 0.1 to 100, got {anisotropy!r}")


def _check_state(config: dict, state: dict) -> None:
    """The weights match the architecture name for name and shape for shape, and are finite numbers."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = {k: tuple(v.shape) for k, v in UNet(**config).state_dict().items()}
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state), key=str), sorted(set(state) - set(expected), key=str)
        raise ValueError(f"weights do not match the architecture (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, shape in expected.items():
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"weight {name} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != shape:
            raise ValueError(f"weight {name} has shape {tuple(t.shape)}, the architecture needs {shape}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"weight {name} contains NaN or inf (did training diverge?)")
