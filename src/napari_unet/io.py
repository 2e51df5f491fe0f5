"""Reading images and writing label images: TIFF, PNG/JPEG, .npy and zarr, lazily where the format allows."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def read_image(path: str | Path):
    """An array for the file: memory-mapped or zarr-backed (lazy) for TIFF stacks, .npy and zarr."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path.")
    suffix = _suffix(p)
    if p.is_dir() and suffix != ".zarr":
        raise InputError(f"{p} is a folder, not an image file: give the path of an image file (or of a .zarr store).")
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{p}: unsupported file type {suffix or '(none)'}; use one of {', '.join(IMAGE_SUFFIXES)}.")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{p} is empty (0 bytes): it was not written completely; save or export it again.")
    try:
        if suffix in (".tif", ".tiff"):
            return _read_tiff(p)
        if suffix == ".npy":
            return np.load(p, mmap_mode="r", allow_pickle=False)
        if suffix == ".zarr":
            return _read_zarr(p)
        from skimage.io import imread

        return imread(p)
    except InputError:
        raise
    except Exception as e:  # every reader has its own exceptions for damaged files
        reason = " ".join(str(e).split())[:200]  # one line, whatever the reader says
        raise InputError(
            f"{p}: cannot read this {suffix} file ({type(e).__name__}: {reason}); it may be damaged or not really "
            f"{suffix}: re-export it, e.g. as TIFF."
        ) from e


def _read_tiff(p: Path):
    import tifffile

    try:
        return tifffile.memmap(p, mode="r")  # uncompressed: lazy, pages read on demand
    except (ValueError, TypeError, OSError):
        pass
    with tifffile.TiffFile(p) as tif:
        n_pages = len(tif.pages)
    if n_pages > 1:
        import zarr

        return zarr.open(tifffile.imread(p, aszarr=True), mode="r")  # compressed stack: page by page
    return tifffile.imread(p)


def _read_zarr(p: Path):
    import zarr

    node = zarr.open(str(p), mode="r")
    if hasattr(node, "shape"):
        return node
    arrays = sorted(name for name, _ in node.arrays())
    if len(arrays) == 1:
        return node[arrays[0]]
    raise InputError(f"{p} is a zarr group with arrays {arrays}: give the path of one array, e.g. {p / arrays[0]}.")


def release_pages(array) -> None:
    """Hand back to the OS the pages a memory-mapped array has read so far; they stay in the file cache.

    Reading a big stack plane by plane through a memory map otherwise leaves every plane resident in the
    process, so its memory would grow with the stack. A no-op for other arrays and where madvise is missing.
    """
    import mmap

    m = getattr(array, "_mmap", None)  # numpy.memmap (tifffile.memmap, np.load(mmap_mode=...)) and its views
    if m is None or not hasattr(m, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    with contextlib.suppress(OSError, ValueError):  # a closed map, or a refusal: only a memory hint is lost
        m.madvise(mmap.MADV_DONTNEED)


def check_writable(folder: str | Path) -> Path:
    """Create the output folder if needed; a clear error when it cannot be written."""
    d = Path(folder)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"Cannot create the output folder {d}: {e.strerror}; choose another with -o.") from e
    if not d.is_dir():
        raise InputError(f"{d} exists and is not a folder; choose another output folder with -o.")
    if not os.access(d, os.W_OK):
        raise InputError(f"The output folder {d} is not writable; choose another with -o.")
    return d


@contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only when the block succeeds.

    A crash or Ctrl-C mid-write never leaves a half-written file where a good one was, and an existing file
    is kept unless ``overwrite``.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise InputError(
            f"{target} already exists; choose another name, or replace it with --overwrite (overwrite=True in Python)."
        )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield tmp
        if tmp.is_dir() and target.is_dir():  # a zarr folder: rename() cannot replace a non-empty folder
            import shutil

            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_labels(path: str | Path, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write a label image (TIFF with zlib, .npy or .png) atomically."""
    p = Path(path)
    with atomic_path(p, overwrite) as tmp:
        suffix = _suffix(p)
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, np.asarray(labels), compression="zlib")
        elif suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(labels))
        elif suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(tmp, np.asarray(labels), extension=".png")
        else:
            raise InputError(f"Labels are written as .tif, .npy or .png, not {suffix}.")
    return p
