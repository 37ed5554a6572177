"""`python -m bloodcell cases list|show|export|add`: the cases database from the command line.

`add_arguments(parser)` declares the sub-commands on the `cases` parser; `run(args)` carries one
out: exit status 0, or 2 with a sentence on bad input. Importing this module loads no TensorFlow;
only `add` loads a model.
"""

import argparse
import json
import sys
from pathlib import Path

from bloodcell import cases


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `cases` sub-commands, on `parser` (the `cases` command's own parser)."""
    sub = parser.add_subparsers(dest="cases_command", required=True, metavar="CASES_COMMAND")
    listing = sub.add_parser("list", help="list the saved cases, the newest first")
    listing.add_argument("--json", action="store_true", help="a JSON array of the cases")
    show = sub.add_parser("show", help="one case: its cells, their labels and the counts")
    show.add_argument("id", type=int, metavar="ID", help="the case's number (from `cases list`)")
    show.add_argument("--json", action="store_true", help="a JSON object with `cells` and `counts`")
    export = sub.add_parser(
        "export",
        help="write a signed case's reviewed cells as DIR/class/picture (for train, evaluate, adapt)",
    )
    export.add_argument("id", type=int, metavar="ID", help="the case's number (from `cases list`)")
    export.add_argument("dir", type=Path, metavar="DIR", help="the folder to write the class folders into")
    add = sub.add_parser("add", help="a new case from pictures, answered by a model")
    add.add_argument(
        "--name", required=True, help="a sample name or number; never a patient's name or identity"
    )
    add.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="the pictures of the sample")
    add.add_argument(
        "--model", default=None, metavar="RUN", help="run id or run folder (default: the default run)"
    )
    add.add_argument(
        "--fields", action="store_true", help="the pictures are microscope fields: every cell found"
    )
    parser.set_defaults(cases_run=run)


def run(args: argparse.Namespace) -> int:
    """Carry out one `cases` sub-command; 0 on success, 2 (with a sentence on stderr) on bad input."""
    command = {"list": _list, "show": _show, "export": _export, "add": _add}[args.cases_command]
    try:
        return command(args)
    except (ValueError, OSError) as error:  # CaseError, RunError, UnusableImage, unwritable folders
        print(f"error: {error}", file=sys.stderr)
        return 2


def _list(args) -> int:
    summaries = cases.Store().summaries()
    if args.json:
        print(json.dumps(summaries))
        return 0
    if not summaries:
        print(f"No cases in {cases.database_path()} yet.")
    for s in summaries:
        signed = f"signed by {s['signed_by']} at {s['signed_at']}" if s["signed_at"] else "not signed"
        print(f"{s['id']:>5}  {s['name']}  (version {s['version']}, {s['cells']} cells, {signed})")
    return 0


def _show(args) -> int:
    case = cases.Store().get(args.id)
    if args.json:
        print(json.dumps(case.as_dict()))
        return 0
    signed = f"signed by {case.signed_by} at {case.signed_at}" if case.signed else "not signed"
    print(f"case {case.id}: {case.name} (version {case.version}, {signed})")
    for cell in case.cells:
        changed = f" (model: {cell.model_label}, changed by {cell.decided_by})" if cell.changed else ""
        print(f"{cell.number:>5}. {cell.file}: {cell.label}{changed} [{cell.status}]")
    print("counts: " + ", ".join(f"{label} {n}" for label, n in case.counts().items()))
    return 0


def _export(args) -> int:
    written = cases.Store().export(args.id, args.dir)
    for label, n in written.items():
        print(f"{label}: {n}")
    print(f"{sum(written.values())} reviewed cells of case {args.id} written to {args.dir}")
    return 0


def _add(args) -> int:
    from bloodcell.predictor import Classifier

    name = cases.check_name(args.name)
    classifier = Classifier.load(args.model)
    sources = [(path.name, path) for path in args.images]
    if args.fields:
        answered = []
        for field in classifier.predict_fields(sources):
            for n, cell in enumerate(field.cells, start=1):
                cell.file = f"{field.file} #{n}"  # the cell's number on the drawn field, as on the page
            answered.append(cases.Answered(field.file, b"", field.answers(), field.platelets, True))
    else:
        answered = [cases.Answered(a.file, b"", [a]) for a in classifier.predict(sources)]
    unusable = [a for upload in answered for a in upload.answers if a.error is not None]
    for answer in unusable:
        print(f"{answer.file}: {answer.error}", file=sys.stderr)
    usable = [
        cases.Answered(u.file, path.read_bytes(), u.answers, u.platelets, u.is_field)
        for u, path in zip(answered, args.images, strict=True)
        if any(a.error is None for a in u.answers)
    ]
    version = cases.model_version(classifier.run.record)
    case_id = cases.save(name, usable, classifier.run.id, version)
    n = sum(len(u.answers) for u in usable)
    print(f"saved case {case_id}: {name}, {n} cells answered by model run {classifier.run.id}")
    print(case_id)
    return 2 if unusable else 0
