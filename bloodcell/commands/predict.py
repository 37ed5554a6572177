"""`predict`: classify pictures of single cells, or every cell of microscope fields."""

import argparse
import json

from bloodcell.commands.common import BFLOAT16_HELP, MODEL_HELP, said


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--json", action="store_true", help="one JSON object per image, one a line")
    parser.add_argument("--bfloat16", action="store_true", help=BFLOAT16_HELP)
    parser.add_argument(
        "--fields",
        action="store_true",
        help="the images are microscope fields: answer every cell found, with its box",
    )
    parser.add_argument(
        "--adapt",
        action="store_true",
        help="the images are cells of one laboratory (at least 20): adapt the model to them first, "
        "without labels (its BatchNorm statistics)",
    )


def run(args: argparse.Namespace) -> int:
    from bloodcell.predictor import Classifier

    classifier = Classifier.load(args.model, args.bfloat16)
    sources = [(path, path) for path in args.images]
    if args.fields:
        if args.adapt:
            raise ValueError("--adapt answers single cells; leave it out with --fields.")
        fields = classifier.predict_fields(sources)
        for field in fields:
            if args.json:
                print("\n".join(json.dumps(line) for line in field.lines()))
            elif field.error:
                print(f"{field.file}: {field.error}")
            else:
                print(f"{field.file}: {len(field.cells)} cells, {field.platelets} platelets")
                for n, cell in enumerate(field.cells, start=1):
                    print(f"  {n}. {cell.box}: {said(cell)}")
        return 2 if any(f.error for f in fields) else 0
    answers = classifier.predict(sources, adapt=args.adapt)
    for answer in answers:
        if args.json:
            print(json.dumps(answer.as_dict()))
        elif answer.error:
            print(f"{answer.file}: {answer.error}")
        else:
            print(f"{answer.file}: {said(answer)}" + (f" ({answer.note})" if answer.note else ""))
    return 2 if any(a.error for a in answers) else 0
