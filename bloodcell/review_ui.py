"""Streamlit helpers of the clinician's review: saving answers as a case, the review gallery with
one click (or one key) per corrected cell, signing, and the reviewers' agreement table."""

import hashlib
import io

import streamlit as st
from PIL import Image

from bloodcell import cases, images, labreport, runs, ui
from bloodcell.cases import LABEL_NAMES, LABELS, NOT_A_CELL
from bloodcell.classes import DISPLAY_NAMES
from bloodcell.predictor import Classifier, FieldAnswer, Prediction

REVIEW_PAGE = "pages/review.py"
CASE = "review_case"  # session key: the case open on the review page
REVIEWER = "review_reviewer"
CURSOR = "review_cursor"  # the cell the keyboard acts on
MESSAGE = "review_message"  # a refusal from a callback, shown on the next run
SAVED = "saved_cases"  # batch digest -> the case it was saved as
SHORT = {
    "basophil": "Ba",
    "eosinophil": "Eo",
    "erythroblast": "Erb",
    "ig": "IG",
    "lymphocyte": "Ly",
    "monocyte": "Mo",
    "neutrophil": "Ne",
    "platelet": "Pl",
    NOT_A_CELL: "✕",
}
# One key per label: the digits in class order, 0 for not a cell ("C" and "R" are Streamlit's own).
KEYS = {label: str(k) for k, label in enumerate(LABELS[:-1], start=1)} | {NOT_A_CELL: "0"}
CARD_WIDTH = 232  # pixels: a card's nine labels fit in two rows
THUMBNAIL = 112


def save_as_case(
    model: Classifier,
    singles: list[tuple[Prediction, bytes]],
    fields: list[tuple[FieldAnswer, bytes]],
    adapted_to: int = 0,
) -> None:
    """The classify page's "Save as case" section: a sample name, then one click saves the
    answers shown (model run and version included) with their pictures."""
    st.subheader("Save as a case for review")
    st.caption(
        "Nothing you upload is kept unless you save it here: the pictures, the model's answers and, "
        "later, the reviewers' decisions go into the cases database, to be reviewed and signed on "
        "the Review page."
    )
    digest = hashlib.sha256(model.run.id.encode())
    for answer, data in [*singles, *fields]:
        digest.update(answer.file.encode() + hashlib.sha256(data).digest())
    batch = f"{digest.hexdigest()}:{adapted_to}"
    saved = st.session_state.setdefault(SAVED, {})
    if batch in saved:
        st.success(f"Saved as case {saved[batch]}.")
        st.page_link(REVIEW_PAGE, label="Review and sign it", icon=":material/fact_check:")
        return
    name = st.text_input(
        "Sample name or number",
        max_chars=cases.MAX_NAME,
        placeholder="e.g. 2025-0412, slide 3",
        help="Identifies the sample in the lab's own records.",
    )
    st.caption("Never a patient's name or any other identity: the cases database is not a patient record.")
    if not st.button("Save as case", icon=":material/save:", disabled=not name.strip()):
        return
    answered = [cases.Answered(a.file, data, [a]) for a, data in singles] + [
        cases.Answered(f.file, data, f.answers(), f.platelets, True) for f, data in fields
    ]
    try:
        case_id = cases.save(name, answered, model.run.id, cases.model_version(model.run.record, adapted_to))
    except (cases.CaseError, images.UnusableImage) as error:
        st.error(str(error))
        return
    saved[batch] = case_id
    st.session_state[CASE] = case_id
    st.success(f"Saved as case {case_id}.")
    st.page_link(REVIEW_PAGE, label="Review and sign it", icon=":material/fact_check:")


def pick_case(summaries: list[dict]) -> int:
    """A select box of the cases, the newest first; the one last opened or saved is kept."""
    ids = [s["id"] for s in summaries]
    by_id = {s["id"]: s for s in summaries}
    wanted = st.session_state.get(CASE)

    def title(case_id: int) -> str:
        s = by_id[case_id]
        state = f"signed by {s['signed_by']}" if s["signed_at"] else "not signed"
        return f"{case_id}: {s['name']} (version {s['version']}, {s['cells']} cells, {state})"

    case_id = st.selectbox("Case", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=title)
    st.session_state[CASE] = case_id
    return case_id


def reviewer() -> str:
    """The reviewer's name or initials, kept for the session."""
    name = st.text_input(
        "Your name or initials",
        value=st.session_state.get(REVIEWER, ""),
        max_chars=cases.MAX_NAME,
        help="Every decision and the signature are logged with it.",
    )
    st.session_state[REVIEWER] = name.strip()
    return name.strip()


def _decide(store: cases.Store, case: cases.Case, cell_id: int, label: str | None, step: bool) -> None:
    """A callback: log `label` for the cell (None: the model's own answer), based on the revision
    the page showed; the keyboard's cursor moves on to the next cell."""
    cell = case.cell(cell_id)
    try:
        store.decide(
            case.id, cell_id, label or cell.model_label, st.session_state.get(REVIEWER, ""), case.revision
        )
    except cases.CaseError as error:
        st.session_state[MESSAGE] = str(error)
        return
    if step:
        st.session_state[CURSOR] = cases.following(case, cell_id)


def _picked(store: cases.Store, case: cases.Case, cell_id: int, key: str) -> None:
    _decide(store, case, cell_id, st.session_state[key], step=False)


def _move(case: cases.Case, cell_id: int, step: int) -> None:
    st.session_state[CURSOR] = cases.following(case, cell_id, step)


def messages() -> None:
    """The refusal of the last change, if any (a stale revision, a signed case)."""
    message = st.session_state.pop(MESSAGE, None)
    if message:
        st.error(message)


def cursor(case: cases.Case) -> cases.Cell:
    """The cell the keyboard acts on (the gallery's first where none, or one gone, was chosen)."""
    ids = {c.id for c in case.cells}
    if st.session_state.get(CURSOR) not in ids:
        st.session_state[CURSOR] = cases.gallery(case)[0][1][0].id
    return case.cell(st.session_state[CURSOR])


def focus(store: cases.Store, case: cases.Case, cell: cases.Cell, editable: bool) -> None:
    """The cell under the cursor: its picture and heat map, the model's answer, and the keys."""
    data = store.picture(cell.id)
    left, right = st.columns(2)
    left.image(
        ui.picture(data), caption=f"Cell {cell.number}: {ui.markdown_text(cell.file)}", width="stretch"
    )
    shown = cell.label if cell.label != NOT_A_CELL else cell.model_label
    try:
        heat = ui.heat_map(ui.classifier(cell.run_id), data, shown)
    except (runs.RunError, images.UnusableImage) as error:
        right.caption(f"No heat map: {error}")
    else:
        right.image(heat, caption=f"Heat map of what drove '{DISPLAY_NAMES[shown]}'", width="stretch")
    top = sorted(cell.probabilities.items(), key=lambda kv: -kv[1])[:3]
    st.markdown(
        f"**Model:** {DISPLAY_NAMES[cell.model_label]} ({cell.status}; "
        + ", ".join(f"{DISPLAY_NAMES[c]} {p:.0%}" for c, p in top)
        + f") · **Now:** {LABEL_NAMES[cell.label]}"
        + (f" (by {ui.markdown_text(cell.decided_by)})" if cell.decided_by else "")
    )
    keys = st.container(horizontal=True)
    for label in LABELS:
        keys.button(
            SHORT[label],
            key=f"key-{label}",
            help=f"{LABEL_NAMES[label]} (key {KEYS[label]}), then the next cell",
            shortcut=KEYS[label],
            on_click=_decide,
            args=(store, case, cell.id, label, True),
            disabled=not editable,
        )
    moves = st.container(horizontal=True)
    moves.button("Previous", key="key-previous", shortcut="Left", on_click=_move, args=(case, cell.id, -1))
    moves.button(
        "Keep",
        key="key-keep",
        help="Keep the model's answer (key K), then the next cell",
        shortcut="K",
        on_click=_decide,
        args=(store, case, cell.id, None, True),
        disabled=not editable,
    )
    moves.button("Next", key="key-next", shortcut="Right", on_click=_move, args=(case, cell.id, 1))


def differential(r: labreport.LabReport) -> None:
    """The live differential of the case's current labels."""
    counts = r.counts
    ui.white_cells_table(counts)
    a, b = st.columns(2)
    a.metric("White cells counted", counts["white_cells"])
    per_100 = counts["erythroblasts_per_100_white"]
    b.metric("Erythroblasts / 100 white cells", "–" if per_100 is None else f"{per_100:.1f}")
    a.metric("Platelets (counted apart)", counts["platelets"])
    b.metric("Excluded (not a cell)", r.excluded)
    st.metric("Corrections made", len(r.corrections))


def gallery(store: cases.Store, case: cases.Case, current: int, editable: bool) -> None:
    """Every cell, grouped as `cases.gallery` orders them, each with its picture, its label as
    one click away, and a button that brings it under the cursor (with its heat map)."""
    for group, members in cases.gallery(case):
        title = (
            f"To check ({len(members)}): the model was unsure, or the picture is unlike its training"
            if group == cases.TO_CHECK
            else f"{LABEL_NAMES[group]} ({len(members)})"
        )
        st.markdown(f"#### {title}")
        row = st.container(horizontal=True)
        for cell in members:
            with row.container(border=True, width=CARD_WIDTH):
                _card(store, case, cell, cell.id == current, editable)


def _card(store: cases.Store, case: cases.Case, cell: cases.Cell, current: bool, editable: bool) -> None:
    st.image(thumbnail(str(store.path), cell.id, store.picture(cell.id)), width=THUMBNAIL)
    said = f"{DISPLAY_NAMES[cell.model_label]} {cell.probabilities[cell.model_label]:.0%}"
    st.caption(f"Cell {cell.number} · model: {said}" + (" ◀ under review" if current else ""))
    key = f"cell-{case.id}-{cell.id}-{case.revision}"
    st.segmented_control(
        f"Cell {cell.number}",
        LABELS,
        default=None if cell.to_check else cell.label,
        format_func=SHORT.get,
        key=key,
        required=True,
        on_change=_picked,
        args=(store, case, cell.id, key),
        disabled=not editable,
        label_visibility="collapsed",
    )
    st.button(
        "Look",
        key=f"look-{cell.id}",
        icon=":material/zoom_in:",
        on_click=_look,
        args=(cell.id,),
        type="tertiary",
    )


def _look(cell_id: int) -> None:
    st.session_state[CURSOR] = cell_id


@st.cache_data(max_entries=4000, show_spinner=False)
def thumbnail(database: str, cell_id: int, _data: bytes) -> bytes:
    """A cell's picture as a PNG at most `THUMBNAIL` pixels on a side (a stored cell never changes)."""
    small = Image.fromarray(images.read_image(_data))
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()


def sign_or_reopen(store: cases.Store, case: cases.Case, name: str) -> None:
    """Sign the case (when unsigned), or start a new version of it (when signed)."""
    if case.signed:
        st.success(
            f"Signed by {ui.markdown_text(case.signed_by)} at {case.signed_at} (UTC). This case is read-only."
        )
        if st.button("Start a new version", disabled=not name, help="An unsigned copy with the same labels."):
            try:
                st.session_state[CASE] = store.new_version(case.id, name)
            except cases.CaseError as error:
                st.session_state[MESSAGE] = str(error)
            st.rerun()
        return
    left = sum(c.to_check for c in case.cells)
    if left:
        st.warning(
            f"{left} cells the model was unsure of have not been looked at: signing counts them as the "
            "model answered."
        )
    if st.button(
        f"Sign as {name}" if name else "Sign (type your name or initials first)",
        type="primary",
        icon=":material/signature:",
        disabled=not name,
    ):
        try:
            store.sign(case.id, name, case.revision)
        except cases.CaseError as error:
            st.session_state[MESSAGE] = str(error)
        st.rerun()


def downloads(r: labreport.LabReport) -> None:
    """The report's downloads: CSV, and an HTML page to print."""
    stem = f"case-{r.case_id}-v{r.version}-report"
    left, right = st.columns(2)
    left.download_button(
        "Download the report (CSV)", labreport.to_csv(r), f"{stem}.csv", mime="text/csv", on_click="ignore"
    )
    right.download_button(
        "Download the print view (HTML)",
        labreport.to_html(r),
        f"{stem}.html",
        mime="text/html",
        on_click="ignore",
    )


def agreement_table() -> None:
    """The Results page's section: how often reviewers kept the model's class, per class."""
    st.subheader("Reviewers' agreement with the model")
    try:
        table = cases.Store().agreement()
    except cases.CaseError as error:
        st.caption(str(error))
        return
    if not table:
        st.caption("No signed case yet: cases reviewed and signed on the Review page show here.")
        return
    st.caption("From the signed cases: of the cells the model put in each class, how many the reviewer kept.")
    st.dataframe(
        [
            {
                "model's class": DISPLAY_NAMES[row["class"]],
                "cells reviewed": row["cells"],
                "changed by a reviewer": row["changed"],
                "agreement": row["agreement"],
            }
            for row in table
        ],
        column_config={"agreement": st.column_config.NumberColumn(format="percent")},
        hide_index=True,
    )
