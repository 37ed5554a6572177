"""Clinical page: review a saved case cell by cell, reclassify with one click or key, sign, and
download the signed report."""

import streamlit as st

from bloodcell import cases, labreport, review_ui, ui

ui.inside_navigation()

st.title("Review and sign a case")
st.caption(
    "The model pre-classifies; a qualified person checks every cell it was unsure of (and any other), "
    "corrects it with one click or one key, and signs. Only the signed count is a result."
)
store = cases.Store()
try:
    summaries = store.summaries()
except cases.CaseError as error:
    st.error(str(error))
    st.stop()
if not summaries:
    st.info("No case is saved yet: classify pictures on the Classify page and save them as a case.")
    st.stop()

top, name_box = st.columns([3, 1])
with top:
    case_id = review_ui.pick_case(summaries)
with name_box:
    reviewer = review_ui.reviewer()
review_ui.messages()
case = store.get(case_id)
editable = not case.signed and bool(reviewer)
if not case.signed and not reviewer:
    st.info("Type your name or initials to review: every decision is logged with who made it and when.")
report = labreport.build(case)

left, right = st.columns([3, 2])
with left:
    st.subheader("Cell under review")
    st.caption(
        "Keys: 1–8 give the class in the order of the buttons, 0 marks not a cell; K keeps the model's "
        "answer; each moves on to the next cell. ← and → move without changing anything."
    )
    review_ui.focus(store, case, review_ui.cursor(case), editable)
with right:
    st.subheader("Differential (updates as you review)")
    review_ui.differential(report)

st.subheader("Cells")
review_ui.gallery(store, case, review_ui.cursor(case).id, editable)

st.subheader("Sign")
review_ui.sign_or_reopen(store, case, reviewer)
if case.signed:
    review_ui.downloads(report)
