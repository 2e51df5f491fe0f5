"""The parser every command shares: one-line errors, and the runtime options (device, precision, channels)."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """--device, --precision and --channel-axis: where and how the network runs, and how images are read."""
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="bf16 on CPUs/GPUs that compute it natively, else fp32 (default: auto)",
    )
    p.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="axis of the channels in multi-channel images (default: detect RGB-like last axes)",
    )


def channel_axis(args: argparse.Namespace) -> int | str:
    """--channel-axis as the core reads it: the axis given, else 'auto' (detect)."""
    return args.channel_axis if args.channel_axis is not None else "auto"


def add_mode_arguments(p: argparse.ArgumentParser, sparse_help: str, dense_help: str):
    """--sparse / --dense, one or the other, into ``args.mode``; returns the group (for aliases)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sparse", dest="mode", action="store_const", const="sparse", help=sparse_help)
    mode.add_argument("--dense", dest="mode", action="store_const", const="dense", help=dense_help)
    return mode
