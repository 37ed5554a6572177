"""A differential count from a batch of classified cells, laid out like a lab report."""

import csv
import io
from collections import Counter

from bloodcell.classes import CLASSES, DISPLAY_NAMES, WHITE_CELLS
from bloodcell.predictor import Prediction


def differential(answers: list[Prediction]) -> dict:
    """Per cent of white cells per class, erythroblasts per 100 white cells and platelets counted
    apart, from the confidently classified cells only; the others are listed for review."""
    counted = [a for a in answers if a.error is None and a.status == "confident"]
    review = [a.file for a in answers if a.error is None and a.status != "confident"]
    counts = Counter(a.label for a in counted)
    white = sum(counts[c] for c in WHITE_CELLS)
    return {
        "white_cells": white,
        "white_percent": {c: (100.0 * counts[c] / white if white else 0.0) for c in WHITE_CELLS},
        "white_counts": {c: counts[c] for c in WHITE_CELLS},
        "erythroblasts": counts["erythroblast"],
        "erythroblasts_per_100_white": 100.0 * counts["erythroblast"] / white if white else None,
        "platelets": counts["platelet"],
        "for_review": review,
        "unusable": [a.file for a in answers if a.error is not None],
    }


def cells_csv(answers: list[Prediction]) -> str:
    """One row per file: class, confidence, status and every class probability, or the error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "class", "confidence", "status", *CLASSES, "error"])
    for a in answers:
        if a.error:
            writer.writerow([a.file, "", "", "unusable", *([""] * len(CLASSES)), a.error])
        else:
            p = a.probabilities
            writer.writerow(
                [
                    a.file,
                    DISPLAY_NAMES[a.label],
                    f"{p[a.label]:.4f}",
                    a.status,
                    *(f"{p.get(c, 0.0):.4f}" for c in CLASSES),
                    "",
                ]
            )
    return buffer.getvalue()


def differential_csv(report: dict) -> str:
    """The differential count as a small CSV table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["cell type", "count", "per cent of white cells"])
    for c in WHITE_CELLS:
        writer.writerow([DISPLAY_NAMES[c], report["white_counts"][c], f"{report['white_percent'][c]:.1f}"])
    writer.writerow(["White cells counted", report["white_cells"], "100.0" if report["white_cells"] else ""])
    per_100 = report["erythroblasts_per_100_white"]
    writer.writerow(
        [
            "Erythroblasts (per 100 white cells)",
            report["erythroblasts"],
            "" if per_100 is None else f"{per_100:.1f}",
        ]
    )
    writer.writerow(["Platelets (counted apart)", report["platelets"], ""])
    writer.writerow(["Held for review", len(report["for_review"]), ""])
    writer.writerow(["Unusable files", len(report["unusable"]), ""])
    return buffer.getvalue()
