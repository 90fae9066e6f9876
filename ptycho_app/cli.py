"""The ``ptycho-app`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__


def get_parser() -> argparse.ArgumentParser:
    """The argument parser (separate from :func:`main` so it can be tested and documented)."""
    parser = argparse.ArgumentParser(prog="ptycho-app",
                                     description="Fourier ptychography by lifting: BM and UDU solvers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="simulate a small FP acquisition, reconstruct it with "
                               "BM and UDU, print metrics and write a comparison PNG")
    demo.add_argument("--out", default="demo-output", help="output folder (default: %(default)s)")
    solver = demo.add_argument_group("solver")
    solver.add_argument("--iters", type=int, default=4000, help="iterations per solver (default: %(default)s)")
    solver.add_argument("--rank", type=int, default=4, help="factor rank r (default: %(default)s)")
    solver.add_argument("--seed", type=int, default=0, help="random start (default: %(default)s)")
    hardware = demo.add_argument_group("hardware")
    hardware.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    hardware.add_argument("--precision", choices=("single", "double"), default="single",
                          help="complex64 or complex128 (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def prepare_output_folder(path) -> Path:
    """Create the output folder (before any long work) or explain why it cannot be used."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {folder}: cannot create the folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {folder}: folder is not writable")
    return folder


def main(argv=None) -> int:
    """Entry point; returns the exit code (2 for a user's mistake, with a one-line message)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            if args.iters < 1 or args.rank < 1:
                raise ValueError("--iters and --rank must be positive")
            from .demo import run_demo

            prepare_output_folder(args.out)

            run_demo(out_dir=args.out, iterations=args.iters, rank=args.rank, device=args.device,
                     precision=args.precision, seed=args.seed, progress=not args.no_progress)
    except (ValueError, OSError) as error:
        print(f"ptycho-app {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ptycho-app {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
