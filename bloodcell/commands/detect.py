"""`detect`: field mode against annotated fields: white-cell recall, precision and time."""

import argparse

from bloodcell.commands.common import MODEL_HELP, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="pictures with Pascal VOC .xml files of the same name")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--readme", help="also update the table between the detect markers of this file")


def run(args: argparse.Namespace) -> int:
    from bloodcell import detection
    from bloodcell.predictor import Classifier

    result = detection.measure(args.data, Classifier.load(args.model))
    if args.readme:
        from bloodcell import benchmark

        benchmark.update_readme(args.readme, detection.markdown(result, args.data), section="detect")
    return report(result, args.out)
