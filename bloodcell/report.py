"""A differential count from a batch of classified cells, laid out like a lab report."""

import csv
import io
from collections import Counter

from bloodcell.classes import CLASSES, DISPLAY_NAMES, WHITE_CELLS
from bloodcell.predictor import Prediction

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection): a file
# named "=HYPERLINK(...)" must stay text, so such cells get a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def differential(answers: list[Prediction], field_platelets: int = 0) -> dict:
    """Per cent of white cells per class, erythroblasts per 100 white cells and platelets counted
    apart, from the confidently classified cells only; the others are listed for review.
    `field_platelets`: platelets counted in microscope fields, beside those answered as cells."""
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
        "platelets": counts["platelet"] + field_platelets,
        "for_review": review,
        "unusable": [a.file for a in answers if a.error is not None],
    }


def cells_csv(answers: list[Prediction], run_id: str) -> str:
    """One row per file (per cell of a field, with its box): class, confidence, status and every
    class probability, or the error, and the model run that answered."""
    rows = [["file", "class", "confidence", "status", *CLASSES, "error", "model run", "box in field"]]
    for a in answers:
        box = " ".join(map(str, a.box)) if a.box else ""
        if a.error:
            rows.append([a.file, "", "", "unusable", *([""] * len(CLASSES)), a.error, run_id, box])
        else:
            p = a.probabilities
            rows.append(
                [
                    a.file,
                    DISPLAY_NAMES[a.label],
                    f"{p[a.label]:.4f}",
                    a.status,
                    *(f"{p.get(c, 0.0):.4f}" for c in CLASSES),
                    "",
                    run_id,
                    box,
                ]
            )
    return _csv(rows)


def differential_rows(counts: dict) -> list[list]:
    """The rows of a differential count (`differential`'s counts) as a lab report prints them:
    a header, each white cell type, white cells, erythroblasts per 100 of them, platelets."""
    rows = [["cell type", "count", "per cent of white cells"]]
    for c in WHITE_CELLS:
        rows.append([DISPLAY_NAMES[c], counts["white_counts"][c], f"{counts['white_percent'][c]:.1f}"])
    rows.append(["White cells counted", counts["white_cells"], "100.0" if counts["white_cells"] else ""])
    per_100 = counts["erythroblasts_per_100_white"]
    rows.append(
        [
            "Erythroblasts (per 100 white cells)",
            counts["erythroblasts"],
            "" if per_100 is None else f"{per_100:.1f}",
        ]
    )
    rows.append(["Platelets (counted apart)", counts["platelets"], ""])
    return rows


def differential_csv(report: dict, run_id: str) -> str:
    """The differential count as a small CSV table, ending with the model run that answered."""
    rows = differential_rows(report)
    rows.append(["Held for review", len(report["for_review"]), ""])
    rows.append(["Unusable files", len(report["unusable"]), ""])
    rows.append(["Model run", run_id, ""])
    return _csv(rows)


def _text_cell(value: object) -> object:
    """`value` as a spreadsheet shows it: text that would start a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    # RFC 4180 line ends: the writer then quotes a carriage return inside a file name too
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([_text_cell(v) for v in row] for row in rows)
    return buffer.getvalue()
