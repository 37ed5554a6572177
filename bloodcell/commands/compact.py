"""`compact`: a copy of a dataset small enough to send to a lent accelerator.

Each image goes through the project's loader at the given size (framed with `--framing`) and is
stored as WebP under the same class folders and names, so the copy gives the same split. A run
trained on the copy is scored on the originals with `rescore --data ORIGINALS`.
"""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the dataset folder, one sub-folder per class")
    parser.add_argument("--out", required=True, help="the folder to write the copy into (created)")
    parser.add_argument("--image-size", type=int, required=True, help="side in pixels of each image")
    parser.add_argument("--framing", action="store_true", help="find and frame the cell, as --framing trains")
    parser.add_argument(
        "--quality",
        type=int,
        default=90,
        choices=range(1, 101),
        metavar="1-100",
        help="WebP quality (default 90)",
    )


def run(args: argparse.Namespace) -> int:
    from bloodcell import datasets

    dataset = datasets.discover(args.data)
    written = datasets.compact_copy(dataset, args.out, args.image_size, args.framing, args.quality)
    print(f"{len(dataset)} images, {written / 2**20:.1f} MiB, in {args.out}")
    return 0
