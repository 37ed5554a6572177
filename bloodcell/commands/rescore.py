"""`rescore`: score a stored run again on (a copy of) its data."""

import argparse

from bloodcell.commands.common import MODEL_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument(
        "--data", help="another copy of its images, e.g. the originals (default: its training data)"
    )


def run(args: argparse.Namespace) -> int:
    from bloodcell import runs, scoring
    from bloodcell.commands.common import log

    scoring.rescore(runs.resolve(args.model), args.data, log=log)
    return 0
