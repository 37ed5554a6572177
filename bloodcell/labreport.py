"""The lab report of a reviewed case: its differential from the reviewers' labels, as CSV and as
a printable HTML page."""

import html
from dataclasses import dataclass

from bloodcell import report
from bloodcell.cases import LABEL_NAMES, NOT_A_CELL, Case, now
from bloodcell.predictor import Prediction


@dataclass(frozen=True)
class Correction:
    """A cell whose class a reviewer changed."""

    number: int
    file: str
    model_label: str
    label: str
    reviewer: str
    at: str


@dataclass(frozen=True)
class LabReport:
    """A case's differential from its current labels, and what a report must say of its making."""

    case_id: int
    name: str
    version: int
    counts: dict  # `report.differential` of the counted cells
    cells_counted: int
    excluded: int
    models: tuple[tuple[str, str | None], ...]  # (run id, model version) of every answering model
    created: str
    signed_by: str | None
    signed_at: str | None
    generated: str
    corrections: tuple[Correction, ...]

    @property
    def signed(self) -> bool:
        return self.signed_at is not None


def build(case: Case, generated: str | None = None) -> LabReport:
    """The report of `case` as its labels stand: every cell counted under its current label (the
    reviewer's where one decided, else the model's), cells marked not a cell excluded."""
    counted = [c for c in case.cells if c.label != NOT_A_CELL]
    # once reviewed, every counted cell is a decided cell: the shared differential counts it as such
    answers = [Prediction(c.file, c.label, status="confident") for c in counted]
    counts = report.differential(answers, field_platelets=case.field_platelets)
    corrections = tuple(
        Correction(c.number, c.file, c.model_label, c.label, c.decided_by or "", c.decided_at or "")
        for c in case.cells
        if c.changed
    )
    models = tuple(dict.fromkeys((c.run_id, c.model_version) for c in case.cells))
    return LabReport(
        case.id,
        case.name,
        case.version,
        counts,
        len(counted),
        len(case.cells) - len(counted),
        models,
        case.created,
        case.signed_by,
        case.signed_at,
        generated or now(),
        corrections,
    )


def rows(r: LabReport) -> list[list]:
    """The report as a table of (item, count, per cent) rows, then its facts; the CSV and the
    printed page are both made of it."""
    table = report.differential_rows(r.counts)
    table.append(["Cells counted", r.cells_counted, ""])
    table.append([f"Cells excluded ({LABEL_NAMES[NOT_A_CELL].lower()})", r.excluded, ""])
    table.append(["Corrections made", len(r.corrections), ""])
    return table


def facts(r: LabReport) -> list[tuple[str, str]]:
    """What the report says of its making: sample, models, reviewer and times."""
    return [
        ("Sample", r.name),
        ("Case", f"{r.case_id} (version {r.version})"),
        ("Model run", "; ".join(run for run, _ in r.models)),
        ("Model version", "; ".join(version or "unknown" for _, version in r.models)),
        ("Reviewed and signed by", r.signed_by or "NOT SIGNED"),
        ("Signed at (UTC)", r.signed_at or ""),
        ("Case created (UTC)", r.created),
        ("Report made (UTC)", r.generated),
    ]


def to_csv(r: LabReport) -> str:
    """The report as CSV: the differential rows, the facts, then one row per correction."""
    table = rows(r)
    table += [[label, value, ""] for label, value in facts(r)]
    table.append([])
    table.append(["correction: cell", "file", "model answered", "reviewer's label", "by", "at"])
    table += [
        [c.number, c.file, LABEL_NAMES[c.model_label], LABEL_NAMES[c.label], c.reviewer, c.at]
        for c in r.corrections
    ]
    return report._csv(table)


def to_html(r: LabReport) -> str:
    """The report as a standalone printable HTML page; every piece of user text escaped."""
    e = html.escape

    def line(cells: list, tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{e(str(v))}</{tag}>" for v in cells) + "</tr>"

    table = rows(r)
    differential = line(table[0], "th") + "".join(line(row) for row in table[1:])
    made = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts(r))
    corrections = "".join(
        line([c.number, c.file, LABEL_NAMES[c.model_label], LABEL_NAMES[c.label], c.reviewer, c.at])
        for c in r.corrections
    )
    heading = ["cell", "file", "model answered", "reviewer's label", "by", "at (UTC)"]
    draft = "" if r.signed else '<p class="draft">DRAFT: not signed; not for release.</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Differential count: {e(r.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #000; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #888; padding: 0.25em 0.6em; text-align: left; }}
.differential td:nth-child(2), .differential td:nth-child(3) {{ text-align: right; }}
.draft {{ font-weight: bold; color: #b00; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Differential count</h1>
{draft}
<table class="facts">{made}</table>
<h2>White cell differential</h2>
<table class="differential">{differential}</table>
<h2>Corrections made ({len(r.corrections)})</h2>
<table class="corrections">{line(heading, "th")}{corrections}</table>
<p>Pre-classified by a model (decision support), reviewed and signed by a person.</p>
</body></html>
"""
