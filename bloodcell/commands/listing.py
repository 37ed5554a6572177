"""`archs`, `runs` and `table`: what the registry and the stored runs hold. None of them loads
Keras: they answer at once."""

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`archs` and `runs` take no options."""


def archs(args: argparse.Namespace) -> int:
    from bloodcell import archs

    for arch in archs.REGISTRY.values():
        print(f"{arch.name:<14} {arch.input_size:>4} px  lr {arch.learning_rate:<7g} {arch.description}")
    return 0


def runs(args: argparse.Namespace) -> int:
    from bloodcell import results, runs

    try:
        default = runs.default_id()
    except runs.RunError:
        default = None
    stored_runs = runs.all_runs()
    if not stored_runs:
        print(f"No runs are stored in {runs.runs_dir()}.", file=sys.stderr)
    for run in stored_runs:
        stored = results.summary(run)
        if stored.damaged:
            print(f"skipped: {stored.note}", file=sys.stderr)
            continue
        metrics, record = stored.metrics, stored.record
        accuracy = f"{metrics['accuracy']:.4f}" if "accuracy" in metrics else "-"
        mark = "*" if run.id == default else " "
        print(f"{mark} {run.id:<40} {record.get('arch', '?'):<12} {stored.status:<12} accuracy {accuracy}")
    return 0


def table_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--match", default="", help="only runs whose id contains this")


def table(args: argparse.Namespace) -> int:
    from bloodcell import results

    print(results.markdown(args.match, skipped=lambda note: print(f"skipped: {note}", file=sys.stderr)))
    return 0
