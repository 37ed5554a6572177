"""Clinical page: upload cell images, get class, probabilities, status and a heat map."""

import plotly.express as px
import streamlit as st

from bloodcell import images, report, ui
from bloodcell.classes import DISPLAY_NAMES, WHITE_CELLS
from bloodcell.predictor import MIN_LAB_CELLS

STATUS_TEXT = {
    "confident": "Confident",
    "review": "Review: the model is not sure",
    "unfamiliar": "Unfamiliar: unlike the training images",
}

st.title("Classify blood cells")
st.caption("Decision support for qualified staff: every answer is to be checked by a person.")

choices = ui.model_choices()
if not choices:
    st.error(
        "No trained model is available. Train one on the Training page or with `python -m bloodcell train`."
    )
    st.stop()
run_id = st.selectbox("Model", choices, help="The first entry is the default model.")
uploads = st.file_uploader(
    "Cell images (one cell per image)",
    type=[e.lstrip(".") for e in images.EXTENSIONS],
    accept_multiple_files=True,
)
if not uploads:
    st.info("Upload one image, or a whole slide's worth at once.")
    st.stop()

adapt = st.toggle(
    "These cells all come from one laboratory: adapt to its stain and camera first",
    help=f"For a batch of at least {MIN_LAB_CELLS} cells from one microscope: the model takes that "
    "batch's image statistics in place of the training laboratory's (no labels needed), then answers.",
    disabled=len(uploads) < MIN_LAB_CELLS,
)
classifier = ui.classifier(run_id)
try:
    answers = classifier.predict([(f.name, f.getvalue()) for f in uploads], adapt=adapt)
except ValueError as error:  # too few usable cells to adapt to
    st.warning(f"{error} The cells are answered without adapting.")
    answers = classifier.predict([(f.name, f.getvalue()) for f in uploads])
if adapt:
    st.caption(f"Adapted to this batch of {len(uploads)} pictures without labels.")
for answer in (a for a in answers if a.error):
    st.warning(f"**{answer.file}**: {answer.error}")
good = [(a, f) for a, f in zip(answers, uploads, strict=True) if not a.error]

if len(good) == 1:
    answer, upload = good[0]
    left, right = st.columns(2)
    left.image(
        classifier.heat_map(upload.getvalue(), answer.label),
        caption=f"{answer.file}: heat map of what drove '{DISPLAY_NAMES[answer.label]}'",
        width="stretch",
    )
    left.image(upload.getvalue(), caption="Original", width=160)
    right.metric("Class", DISPLAY_NAMES[answer.label])
    right.metric("Probability", f"{answer.probabilities[answer.label]:.1%}")
    right.markdown(f"**Status:** {STATUS_TEXT[answer.status]}")
    chart = px.bar(
        x=list(answer.probabilities.values()),
        y=[DISPLAY_NAMES[c] for c in answer.probabilities],
        orientation="h",
        labels={"x": "calibrated probability", "y": ""},
        range_x=[0, 1],
    )
    right.plotly_chart(chart, width="stretch")
elif good:
    st.subheader(f"{len(good)} cells")
    st.dataframe(
        [
            {
                "image": ui.thumbnail(upload.getvalue()),
                "file": a.file,
                "class": DISPLAY_NAMES[a.label],
                "confidence": a.probabilities[a.label],
                "status": a.status,
            }
            for a, upload in good
        ],
        column_config={
            "image": st.column_config.ImageColumn(width="small"),
            "confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
        },
        hide_index=True,
    )
    counts = report.differential(answers)
    st.subheader("Differential count")
    st.caption("From confidently classified cells only; the others are held out for review below.")
    st.dataframe(
        [
            {
                "cell type": DISPLAY_NAMES[c],
                "count": counts["white_counts"][c],
                "% of white cells": round(counts["white_percent"][c], 1),
            }
            for c in WHITE_CELLS
        ],
        hide_index=True,
    )
    cols = st.columns(4)
    cols[0].metric("White cells counted", counts["white_cells"])
    per_100 = counts["erythroblasts_per_100_white"]
    cols[1].metric("Erythroblasts / 100 white cells", "–" if per_100 is None else f"{per_100:.1f}")
    cols[2].metric("Platelets (counted apart)", counts["platelets"])
    cols[3].metric("Held for review", len(counts["for_review"]))
    if counts["for_review"]:
        st.markdown("**For review:** " + ", ".join(counts["for_review"]))
    left, right = st.columns(2)
    left.download_button("Download differential (CSV)", report.differential_csv(counts), "differential.csv")
    right.download_button("Download all cells (CSV)", report.cells_csv(answers), "cells.csv")
