"""What a reviewer is shown of cases: the gallery's order and how often reviewers kept the
model's class."""

from bloodcell.cases.records import LABELS, Case, Cell
from bloodcell.classes import CLASSES

TO_CHECK = "to check"


def gallery(case: Case) -> list[tuple[str, list[Cell]]]:
    """The review gallery's groups, as analysers show them: the cells to check first (unlike the
    training pictures, then unsure), then one group per current label in `LABELS` order."""
    check = sorted((c for c in case.cells if c.to_check), key=lambda c: (c.status != "unfamiliar", c.number))
    groups = [(TO_CHECK, check)] if check else []
    for label in LABELS:
        members = [c for c in case.cells if c.label == label and not c.to_check]
        if members:
            groups.append((label, members))
    return groups


def following(case: Case, cell_id: int, step: int = 1) -> int:
    """The cell `step` places after `cell_id` in the gallery's order (kept at either end)."""
    order = [c.id for _, members in gallery(case) for c in members]
    where = order.index(cell_id) if cell_id in order else 0
    return order[min(max(where + step, 0), len(order) - 1)]


def agreement(cells: list[Cell]) -> list[dict]:
    """Per class the model answered (`CLASSES` order, classes without cells left out): cells,
    how many a reviewer kept and changed, and the agreement rate (kept / cells)."""
    table = []
    for label in CLASSES:
        answered = [c for c in cells if c.model_label == label]
        if answered:
            kept = sum(not c.changed for c in answered)
            table.append(
                {
                    "class": label,
                    "cells": len(answered),
                    "kept": kept,
                    "changed": len(answered) - kept,
                    "agreement": kept / len(answered),
                }
            )
    return table
