"""`crosslab`: score a model on other laboratories' labelled folders, before and after adapting."""

import argparse
from pathlib import Path

from bloodcell.commands.common import MODEL_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="*", metavar="DIR", help="one sub-folder per class each")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument(
        "--shots", type=int, nargs="*", default=[5, 20], help="labelled cells per class to adapt with"
    )
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="instead: a table of these runs side by side from their stored cross-lab records",
    )


def run(args: argparse.Namespace) -> int:
    from bloodcell import adaptation, runs
    from bloodcell.predictor import Classifier

    if args.compare:
        print(adaptation.comparison([runs.resolve(ref) for ref in args.compare]))
        return 0
    if not args.folders:
        raise ValueError("Name at least one labelled folder (or --compare RUN...).")
    classifier = Classifier.load(args.model)
    result = adaptation.crosslab(classifier, args.folders, tuple(args.shots))
    classifier.run.write_json("crosslab.json", result)
    print(adaptation.table(result))
    if args.out:
        from bloodcell import storage

        storage.write_json(Path(args.out), result)
    return 0
