"""The lab report of a case: its numbers are the reviewed labels', always; user text is escaped."""

import csv
import io
from collections import Counter
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from bloodcell import cases, labreport
from bloodcell.classes import CLASSES, DISPLAY_NAMES, WHITE_CELLS


def case_of(
    model: list[str], reviewed: list[str | None], platelets: int = 0, signed: bool = True
) -> cases.Case:
    cells = tuple(
        cases.Cell(
            id=n,
            number=n,
            picture_id=n,
            file=f"cell{n}.png",
            box=None,
            run_id="run-1",
            model_version="abc123def456",
            model_label=m,
            probabilities={m: 1.0},
            status="confident",
            label=r or m,
            decided_by="AB" if r else None,
            decided_at="2025-01-02T03:04:05+00:00" if r else None,
        )
        for n, (m, r) in enumerate(zip(model, reviewed, strict=True), start=1)
    )
    return cases.Case(
        1, "sample <b>&1</b>", "2025-01-01T00:00:00+00:00", "x", 3, 1, None,
        "AB" if signed else None, "2025-01-02T04:00:00+00:00" if signed else None,
        cells, (), platelets,
    )  # fmt: skip


class Tables(HTMLParser):
    """The rows of every table of an HTML page, by the table's class."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.current = self.tables.setdefault(dict(attrs).get("class", ""), [])
        elif tag == "tr":
            self.current.append([])
        elif tag in ("td", "th"):
            self.current[-1].append("")

    def handle_data(self, data):
        if self.current and self.current[-1]:
            self.current[-1][-1] += data


def numbers(table: list[list[str]]) -> dict[str, tuple[str, str]]:
    return {row[0]: (row[1], row[2]) for row in table if len(row) == 3}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(CLASSES), st.one_of(st.none(), st.sampled_from(cases.LABELS))),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 30),
)
def test_the_reports_numbers_equal_the_reviewed_labels_always(cells, platelets):
    model, reviewed = [m for m, _ in cells], [r for _, r in cells]
    labels = [r or m for m, r in cells]
    found = Counter(labels)
    white = sum(found[c] for c in WHITE_CELLS)
    r = labreport.build(case_of(model, reviewed, platelets))

    from_csv = numbers(list(csv.reader(io.StringIO(labreport.to_csv(r)))))
    page = Tables()
    page.feed(labreport.to_html(r))
    from_html = numbers(page.tables["differential"])
    for shown in (from_csv, from_html):
        for c in WHITE_CELLS:
            count, per_cent = shown[DISPLAY_NAMES[c]]
            assert int(count) == found[c]
            assert per_cent == f"{100 * found[c] / white if white else 0.0:.1f}"  # to the printed digit
        assert int(shown["White cells counted"][0]) == white
        count, per_100 = shown["Erythroblasts (per 100 white cells)"]
        assert int(count) == found["erythroblast"]
        assert per_100 == ("" if not white else f"{100 * found['erythroblast'] / white:.1f}")
        assert int(shown["Platelets (counted apart)"][0]) == found["platelet"] + platelets
        assert int(shown["Cells counted"][0]) == len(labels) - found[cases.NOT_A_CELL]
        assert int(shown["Cells excluded (not a cell / unusable)"][0]) == found[cases.NOT_A_CELL]
        assert int(shown["Corrections made"][0]) == sum(
            m != label for m, label in zip(model, labels, strict=True)
        )
    assert len(page.tables["corrections"]) == 1 + len(r.corrections)


def test_the_report_says_who_signed_which_model_and_escapes_user_text():
    r = labreport.build(case_of(["neutrophil", "basophil"], ["lymphocyte", None]), generated="2025-01-03")
    page = labreport.to_html(r)
    assert "sample &lt;b&gt;&amp;1&lt;/b&gt;" in page and "<b>&1" not in page
    assert "run-1" in page and "abc123def456" in page and "DRAFT" not in page
    rows = list(csv.reader(io.StringIO(labreport.to_csv(r))))
    assert ["Reviewed and signed by", "AB", ""] in rows
    assert ["1", "cell1.png", "Neutrophil", "Lymphocyte", "AB", "2025-01-02T03:04:05+00:00"] in rows
    draft = labreport.to_html(labreport.build(case_of(["ig"], [None], signed=False)))
    assert "DRAFT: not signed" in draft


def test_a_spreadsheet_formula_in_a_sample_name_stays_text():
    case = case_of(["ig"], [None])
    r = labreport.build(cases.Case(**{**case.__dict__, "name": "=HYPERLINK(1)"}))
    assert ["Sample", "'=HYPERLINK(1)", ""] in list(csv.reader(io.StringIO(labreport.to_csv(r))))
