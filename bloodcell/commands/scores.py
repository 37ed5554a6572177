"""`robustness`, `misses` and `audit`: what a model's test split and a data folder hold."""

import argparse
import json
from pathlib import Path

from bloodcell.commands.common import MODEL_HELP, report


def robustness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="a folder holding the images the model was tested on (by file name)"
    )
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--cells", type=int, default=200, help="test cells to damage (default: 200)")
    parser.add_argument("--out", help="also write the JSON here")


def robustness(args: argparse.Namespace) -> int:
    from bloodcell import robustness, runs

    result = robustness.damaged(args.data, args.model, args.cells)
    runs.resolve(args.model).write_json(robustness.RECORD, result)  # docs/results.md reads it there
    return report(result, args.out)


def misses_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run ids or run directories")
    parser.add_argument("--out", help="also write the JSON here")


def misses(args: argparse.Namespace) -> int:
    from bloodcell import results, runs

    found = results.misses([runs.resolve(ref) for ref in args.runs])
    print(
        f"{found['n']} test images: {found['missed_by_any']} missed by at least one run, "
        f"{found['missed_by_all']} by all {len(found['runs'])}"
    )
    print("| image | class | missed by | " + " | ".join(found["runs"]) + " |")
    print("|---|---|---:|" + "---|" * len(found["runs"]))
    for image in found["images"]:
        answers = " | ".join(image["answers"].values())
        print(f"| {image['file']} | {image['true']} | {image['missed_by']} | {answers} |")
    if args.out:
        from bloodcell import storage

        storage.write_bytes(Path(args.out), (json.dumps(found, indent=2) + "\n").encode())
    return 0


def audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True)


def audit(args: argparse.Namespace) -> int:
    from bloodcell import datasets

    print(json.dumps(datasets.audit(datasets.discover(args.data)), indent=2))
    return 0
