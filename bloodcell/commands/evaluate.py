"""`evaluate`: score a model, or an ensemble of models, on a labelled folder."""

import argparse
import sys
import time

from bloodcell.commands.common import BFLOAT16_HELP, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder with one sub-folder per class (any subset)")
    parser.add_argument(
        "--model",
        action="append",
        help="run id or run directory (default: the default model); repeat it to score the ensemble "
        "(mean probability) of several models",
    )
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument(
        "--test-split",
        action="store_true",
        help="only the images the model was tested on (its test split, found in DIR by file name)",
    )
    parser.add_argument(
        "--tta", action="store_true", help="average over the 8 flips and turns of each image (8x slower)"
    )
    parser.add_argument("--bfloat16", action="store_true", help=BFLOAT16_HELP)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from bloodcell import datasets, evaluation, tested
    from bloodcell.predictor import Classifier

    classifiers = [Classifier.load(ref, args.bfloat16) for ref in args.model or [None]]
    first = classifiers[0]
    if any(c.classes != first.classes for c in classifiers):
        raise ValueError("The models of an ensemble must answer the same classes in the same order.")
    dataset = datasets.discover(args.data)
    if args.test_split:
        dataset = tested.images(dataset, *(c.run for c in classifiers))
    unknown = [c for c in dataset.classes if c not in first.classes]
    if unknown:
        raise ValueError(f"The model was not trained on {', '.join(unknown)}; remove those folders.")
    # each model's own input path: its size, and the cell framed if it learnt from framed cells
    arrays = [datasets.load_arrays(dataset, c.image_size, False, c.framing) for c in classifiers]
    readable = np.logical_and.reduce([ok for _, ok in arrays])
    for path in (f for f, ok in zip(dataset.files, readable, strict=True) if not ok):
        print(f"skipped unreadable file {path}", file=sys.stderr)
    labels = [first.classes.index(dataset.classes[y]) for y in dataset.labels[readable]]
    started = time.perf_counter()
    probabilities = np.mean(
        [c.analyse(x[readable], tta=args.tta)[0] for c, (x, _) in zip(classifiers, arrays, strict=True)],
        axis=0,
    )
    seconds = time.perf_counter() - started
    result = evaluation.metrics(labels, probabilities, first.classes)
    result["model"] = first.run.id if len(classifiers) == 1 else [c.run.id for c in classifiers]
    result["test_time_augmentation"] = args.tta
    result["bfloat16"] = args.bfloat16
    result["model_ms_per_image"] = 1000 * seconds / max(len(labels), 1)
    return report(result, args.out)
