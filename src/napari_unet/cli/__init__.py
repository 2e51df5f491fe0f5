"""The ``napari-unet`` command: train, predict, evaluate, export, demo. Bad input exits non-zero with one line.

One module per command (``add_parser`` adds its arguments, ``run`` does it); the work itself is in the core.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

from .._version import __version__
from ..errors import InputError
from . import demo, evaluate, export, predict, train
from ._args import Parser

COMMANDS = {"train": train, "predict": predict, "evaluate": evaluate, "export": export, "demo": demo}

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; cheap (no torch), so ``--help`` answers at once."""
    parser = Parser(prog="napari-unet", description="Train and run U-Nets for segmentation, headless.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors the user can fix are one line and a non-zero exit, never a traceback."""
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    args.started = started
    try:
        return COMMANDS[args.command].run(args)
    except InputError as e:
        print(f"napari-unet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"napari-unet {args.command}: error: out of memory; use smaller or fewer images.", file=sys.stderr)
        return 1
    except OSError as e:
        what = getattr(e, "strerror", None) or str(e) or type(e).__name__
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"napari-unet {args.command}: error: {what}{where}; check the paths and free space.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"napari-unet {args.command}: interrupted; every output is complete or absent, none is half-written.",
            file=sys.stderr,
        )
        return 130
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            # run as a command: the work is done or abandoned, so a late Ctrl-C must not print a traceback
            # from the interpreter's exit handlers
            signal.signal(signal.SIGINT, signal.SIG_IGN)
