"""Checks on a command's outputs before any work: never over an input, never over a file the user has, and
never a long run whose result cannot be written."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name the same file (also through links, or before it exists)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def refuse_inputs(out: Path, inputs: Sequence[str | Path], flag: str) -> None:
    """An output must never replace one of the command's own inputs."""
    for src in inputs:
        if same_file(out, src):
            raise InputError(
                f"{flag} {out} is also an input ({src}): writing there would destroy it; choose another name."
            )


def check_output_file(out: Path, flag: str = "-o") -> None:
    """Before a long run: the output can be created where asked (a folder exists, is writable, out is no folder)."""
    if out.is_dir():
        raise InputError(f"{flag} {out} is a folder: give a file name, e.g. {out / 'model.pt'}.")
    parent = out.parent
    if not parent.is_dir():
        raise InputError(f"The folder {parent} does not exist; create it or choose another {flag}.")
    probe = parent / f".{out.name}.{os.getpid()}.probe"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise InputError(f"Cannot write in {parent} ({e.strerror or e}); choose another {flag}.") from e


def refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse before any work if an output exists, unless --overwrite: nothing the user has is replaced."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]}{more} already exists; choose another output folder or pass --overwrite.")
