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
    parser.add_argument("--readme", help="with --models: update the table between the benchmark markers here")
    parser.add_argument(
        "--training",
        metavar="DATA",
        help="instead: input paths (memory, streamed files) and training steps (float32, mixed) on DATA",
    )
    parser.add_argument("--arch", default="cnn", help="with --training (default: cnn)")
    parser.add_argument("--image-size", type=int, default=64, help="with --training (default: 64)")


def run(args: argparse.Namespace) -> int:
    from bloodcell import benchmark

    if args.training:
        return report(benchmark.training_speed(args.training, args.arch, args.image_size), args.out)
    if not args.images:
        raise ValueError("Name the cell images to answer (or use --training DATA).")
    image_bytes = [Path(p).read_bytes() for p in args.images]
    if not args.models:
        return report(benchmark.serving(image_bytes, args.model, bfloat16=args.bfloat16), args.out)
    result = benchmark.models(image_bytes)
    table = benchmark.markdown(result)
    print(table)
    if args.readme:
        benchmark.update_readme(args.readme, table)
    return report(result, args.out)
