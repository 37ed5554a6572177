"""The command line of DESIGN.md: `python -m bloodcell <command>`.

Exit status 0 on success, 2 on bad input (an unusable image, a missing folder, an unknown run,
a run with a missing or damaged file), always with a sentence, never a traceback.

Adding a command is one entry in `COMMANDS`: the module that implements it, with a function
that adds its options to a parser and one that runs it (`add_arguments(parser)` and
`run(args) -> int` unless the entry names others). Only the module of the command given is
imported, so a command that needs no model never waits for TensorFlow.
"""

import argparse
import importlib
import json
import sys
import zipfile
from dataclasses import dataclass

# What a damaged file of a run raises where a command reads it: a truncated JSON file or zip
# archive (.npz, .keras), an entry missing from run.json.
DAMAGED_FILE = (KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError)


@dataclass(frozen=True)
class Command:
    help: str
    module: str
    run: str = "run"
    arguments: str = "add_arguments"

    def load(self):
        """(the function adding its options to a parser, the function running it)"""
        module = importlib.import_module(self.module)
        return getattr(module, self.arguments), getattr(module, self.run)


COMMANDS: dict[str, Command] = {
    "train": Command("train one architecture and store the run", "bloodcell.commands.train"),
    "resume": Command(
        "continue an interrupted training run from its last checkpoint", "bloodcell.commands.resume"
    ),
    "evaluate": Command("score a model on a labelled folder", "bloodcell.commands.evaluate"),
    "predict": Command("classify images", "bloodcell.commands.predict"),
    "detect": Command(
        "field mode against annotated fields: white-cell recall, precision, time (JSON)",
        "bloodcell.commands.detect",
    ),
    "adapt": Command(
        "adapt a model to a laboratory from its labelled cells; a new run", "bloodcell.commands.adapt"
    ),
    "crosslab": Command(
        "score a model on other laboratories' labelled folders, before and after adapting",
        "bloodcell.commands.crosslab",
    ),
    "archs": Command("list the architectures", "bloodcell.commands.listing", run="archs"),
    "runs": Command("list the stored runs", "bloodcell.commands.listing", run="runs"),
    "benchmark": Command("serving speed of a model on this machine (JSON)", "bloodcell.commands.benchmark"),
    "robustness": Command(
        "statuses on damaged test cells of a model's split (JSON)",
        "bloodcell.commands.scores",
        run="robustness",
        arguments="robustness_arguments",
    ),
    "misses": Command(
        "the test images that runs sharing a test split answer wrongly",
        "bloodcell.commands.scores",
        run="misses",
        arguments="misses_arguments",
    ),
    "table": Command(
        "the stored runs as a Markdown table",
        "bloodcell.commands.listing",
        run="table",
        arguments="table_arguments",
    ),
    "compact": Command(
        "a small copy of a dataset through the loader, to train on a lent accelerator",
        "bloodcell.commands.compact",
    ),
    "rescore": Command(
        "score a stored run again on (a copy of) its data: BatchNorm, metrics, calibration",
        "bloodcell.commands.rescore",
    ),
    "audit": Command(
        "counts, sizes, unreadable files and duplicates of a folder",
        "bloodcell.commands.scores",
        run="audit",
        arguments="audit_arguments",
    ),
    "cases": Command(
        "cases of a sample: add, list, show, export (the cases database)", "bloodcell.commands.cases"
    ),
    "docs": Command("write docs/results.md again from the run records", "bloodcell.docs"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(argv[0] if argv else None).parse_args(argv)
    try:
        return args.command(args)
    except (*DAMAGED_FILE, ValueError, OSError) as error:
        damage = _damage(args, error) if isinstance(error, DAMAGED_FILE) else None
        if damage is None and not isinstance(error, ValueError | OSError):
            raise  # no damaged file explains it: a bug, whose traceback is wanted
        print(f"error: {damage or error}", file=sys.stderr)
        return 2


def parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser, with the options of command `chosen` (None: of every command,
    each command's module imported)."""
    top = argparse.ArgumentParser(
        prog="python -m bloodcell", description="Classify peripheral blood cell images."
    )
    sub = top.add_subparsers(required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        own = sub.add_parser(name, help=command.help, description=command.help)
        if chosen in (None, name):
            add_arguments, run = command.load()
            add_arguments(own)
            own.set_defaults(command=run)
    return top


def _damage(args, error: Exception) -> str | None:
    """What the runs this command names lack, in sentences, where a damaged file of theirs (or
    an entry missing from their run.json) explains `error`; None where none does."""
    from bloodcell import results

    notes = []
    for run in _named_runs(args):
        stored = results.read(run)
        lacks = stored.damaged
        if not lacks and isinstance(error, KeyError) and error.args and error.args[0] not in stored.record:
            lacks = [results.Lack(f"its '{error.args[0]}' entry", "run.json", results.NONE)]
        notes.append(results.sentence(run, lacks))
    if not any(notes):
        return None
    return " ".join(n for n in notes if n) + " Train it again, or name another run."


def _named_runs(args) -> list:
    """The stored runs a command works on: its --model (the default run without one), its RUN
    arguments; those that cannot be found are left out."""
    from bloodcell import runs

    if hasattr(args, "runs"):
        refs = args.runs
    elif hasattr(args, "run"):
        refs = [args.run]
    elif hasattr(args, "model"):
        refs = args.model if isinstance(args.model, list) else [args.model]
    else:
        return []
    found = []
    for ref in refs:
        try:
            found.append(runs.resolve(ref))
        except runs.RunError:
            continue
    return found
