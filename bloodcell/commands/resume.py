"""`resume`: continue an interrupted training run from its last checkpoint."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_ID")


def run(args: argparse.Namespace) -> int:
    from bloodcell import jobs, training
    from bloodcell.commands.common import log

    with jobs.exclusive():
        training.resume(args.run, log=log)
    return 0
