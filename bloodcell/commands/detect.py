"""`detect`: field mode against annotated fields: white-cell recall, precision and time."""

import argparse

from bloodcell.commands.common import MODEL_HELP, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="pictures with Pascal VOC .xml files of the same name")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--out", help="also write the JSON here")


def run(args: argparse.Namespace) -> int:
    from bloodcell import detection
    from bloodcell.predictor import Classifier

    classifier = Classifier.load(args.model)
    result = detection.measure(args.data, classifier)
    classifier.run.write_json(detection.RECORD, result)  # docs/results.md reads it there
    print(detection.markdown(result, args.data))
    return report(result, args.out)
