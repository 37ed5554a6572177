"""`adapt`: adapt a model to a laboratory from a folder of its labelled cells; a new run."""

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="the lab's cells, one sub-folder per class (any subset, 5 or more each)"
    )
    parser.add_argument("--model", help="run id or run directory to adapt (default: the default model)")
    parser.add_argument("--name", default="", help="a name for the new run (default: the folder's name)")


def run(args: argparse.Namespace) -> int:
    from bloodcell import adaptation
    from bloodcell.predictor import Classifier

    classifier = Classifier.load(args.model)
    lab = adaptation.read_lab(args.data, classifier)
    for path, reason in lab.refused:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    adaptation.check_enough(lab.labels, classifier.classes)
    adapted, result = adaptation.fine_tuned(classifier, lab.x, lab.labels)
    print(
        f"adapted {classifier.run.id} to {len(lab.labels)} cells of {lab.root.name}: "
        f"temperature {result['temperature']:.3f}, review below {result['review']['threshold']:.3f}"
    )
    stored = adaptation.store(adapted, lab, result, args.name or run_name(lab.root.name))
    print(stored.id)
    return 0


def run_name(text: str) -> str:
    """A folder's name as a run name: letters, digits, '-' and '_' only, at most 40."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40] or "lab"
