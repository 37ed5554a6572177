"""`benchmark`: serving speed of a model, the best run of each architecture, or training speed."""

import argparse
from pathlib import Path

from bloodcell.commands.common import BFLOAT16_HELP, MODEL_HELP, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="cell images to answer")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument(
        "--models",
        action="store_true",
        help="the default model and the best run of each architecture: scores with bootstrap intervals, "
        "training speed and share of the CPU's peak, serving speed",
    )
    parser.add_argument("--bfloat16", action="store_true", help="serve in bfloat16 (" + BFLOAT16_HELP + ")")
    parser.add_argument(
        "--training",
        metavar="DATA",
        help="instead: input paths (memory, streamed files) and training steps (float32, mixed) on DATA",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="instead: the dashboard in chromium on a fresh server: first page, first and later answers "
        "to the IMAGEs (single cells, at least two)",
    )
    parser.add_argument("--arch", default="cnn", help="with --training (default: cnn)")
    parser.add_argument("--image-size", type=int, default=64, help="with --training (default: 64)")


def run(args: argparse.Namespace) -> int:
    from bloodcell import benchmark

    if args.training:
        return report(benchmark.training_speed(args.training, args.arch, args.image_size), args.out)
    if not args.images:
        raise ValueError("Name the cell images to answer (or use --training DATA).")
    from bloodcell import runs

    pictures = [Path(p) for p in args.images]
    if args.dashboard:
        result = benchmark.dashboard(pictures, pause=8)
        runs.resolve(None).write_json(benchmark.DASHBOARD_RECORD, result)  # docs/results.md reads it
        return report(result, args.out)
    if args.models:
        result = benchmark.models([p.read_bytes() for p in pictures])
        print(benchmark.markdown(result))
        return report(result, args.out)
    result = benchmark.serving(pictures, args.model, bfloat16=args.bfloat16)  # files: read as predict does
    runs.resolve(args.model).write_json(benchmark.RECORD, result)
    return report(result, args.out)
