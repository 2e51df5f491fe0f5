"""Reading bioimage.io model packages back: which paths are packages, napari-unet's own, and their validation.

A package is a folder or a zip with ``rdf.yaml`` (or ``bioimageio.yaml``) and the files it names. napari-unet
runs only the packages it exported (``config.napari_unet`` in the rdf says so): ``read_package`` returns
their architecture, metadata and state dict, for ``checkpoint.load_model``; reading needs only torch and
PyYAML. ``validate_package`` is ``bioimageio.spec``'s own check, for any package (it needs that extra).
No Qt, no napari here.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import torch

from .errors import InputError

PACKAGE_FORMAT = "napari-unet-model"  # config.napari_unet.format in rdf.yaml: "exported by napari-unet"
PACKAGE_FORMAT_VERSION = 1
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
_MAX_MEMBER = 1 << 31  # a weights file larger than 2 GiB in a package is not one of ours


def require_spec():
    """The ``bioimageio.spec`` module, or an ``InputError`` with the pip command that installs it."""
    try:
        import bioimageio.spec as spec
    except ImportError as e:
        raise InputError(
            "Exporting to bioimage.io needs the bioimageio.spec package: pip install 'napari-unet-trainer[bioimageio]'."
        ) from e
    return spec


def validate_package(path: str | Path) -> dict:
    """``bioimageio.spec``'s format validation of a package (offline): {"status": ..., "error": first error}."""
    spec = require_spec()
    p = Path(path)
    source = p / _rdf_name(p) if p.is_dir() else p
    descr = spec.load_description(source, perform_io_checks=True)
    summary = descr.validation_summary
    errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in summary.details for e in d.errors]
    return {"status": summary.status, "error": "; ".join(errors[:5]), "description": descr}


def _rdf_name(folder: Path) -> str:
    for n in RDF_NAMES:
        if (folder / n).is_file():
            return n
    return RDF_NAMES[0]


def is_package(path: str | Path) -> bool:
    """A bioimage.io package: a folder with rdf.yaml / bioimageio.yaml, or a zip holding one at its top."""
    p = Path(path)
    if p.is_dir():
        return any((p / n).is_file() for n in RDF_NAMES)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as z:
            return any(n in RDF_NAMES for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_package(path: str | Path) -> tuple[dict, dict, dict]:
    """(architecture, meta, state dict) of a package napari-unet exported; anything else raises ``InputError``."""
    p = Path(path)
    try:
        with contextlib.ExitStack() as stack:
            return _read_package(p, stack)
    except InputError:
        raise
    except (KeyError, TypeError, AttributeError, StopIteration, ValueError, OSError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"{p}: the napari-unet bioimage.io package is incomplete or damaged ({reason}).") from e
    except Exception as e:  # torch.load's unpickling refusals, YAML errors and the like
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"{p}: cannot read this bioimage.io package ({reason}).") from e


def _read_package(p: Path, stack: contextlib.ExitStack) -> tuple[dict, dict, dict]:
    import yaml

    if p.is_dir():
        rdf_text = (p / _rdf_name(p)).read_text()

        def read(name: str) -> bytes:
            f = (p / name).resolve()
            if p.resolve() not in f.parents:
                raise InputError(f"{p}: the package names a file outside itself ({name}).")
            return f.read_bytes()
    else:
        z = stack.enter_context(zipfile.ZipFile(p))
        rdf_text = z.read(next(n for n in RDF_NAMES if n in z.namelist())).decode()

        def read(name: str) -> bytes:
            info = z.getinfo(name)
            if info.file_size > _MAX_MEMBER:
                raise InputError(f"{p}: {name} is too large for a napari-unet model.")
            return z.read(info)

    rdf = yaml.safe_load(rdf_text)
    ours = ((rdf or {}).get("config") or {}).get("napari_unet") if isinstance(rdf, dict) else None
    if not isinstance(ours, dict) or ours.get("format") != PACKAGE_FORMAT:
        raise InputError(
            f"{p} is a bioimage.io package that napari-unet did not export: napari-unet runs only its own "
            "packages; run this one with deepImageJ, ilastik or bioimageio.core."
        )
    version = ours.get("format_version")
    if not isinstance(version, int) or version > PACKAGE_FORMAT_VERSION:
        raise InputError(f"{p} was exported by a newer napari-unet (format {version}); upgrade napari-unet.")
    source = rdf["weights"]["pytorch_state_dict"]["source"]
    state = torch.load(io.BytesIO(read(str(source))), map_location="cpu", weights_only=True)
    return ours["architecture"], ours["meta"], state
