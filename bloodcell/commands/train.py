"""`train`: train one architecture on a labelled folder and store the run."""

import argparse

from bloodcell import config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_arguments(parser)
    parser.add_argument("--set-default", action="store_true", help="serve predictions from this run")


def run(args: argparse.Namespace) -> int:
    from bloodcell import jobs, runs, training
    from bloodcell.commands.common import log

    chosen = config.from_arguments(args)
    with jobs.exclusive(chosen):
        trained = training.train(chosen, log=log)
    if trained is None:
        print("this worker is done; the chief worker keeps the run")
    elif args.set_default:
        runs.set_default(trained.id)
        print(f"default model: {trained.id}")
    return 0
