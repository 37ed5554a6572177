"""Clinical page: upload cell images, get class, probabilities, status and a heat map."""

import plotly.graph_objects as go
import streamlit as st

from bloodcell import images, report, review_ui, runs, ui
from bloodcell.classes import DISPLAY_NAMES
from bloodcell.predictor import MIN_LAB_CELLS

ui.inside_navigation()

STATUS_TEXT = {
    "confident": "Confident",
    "review": "Review: the model is not sure",
    "unfamiliar": "Unfamiliar: unlike the training images",
}

st.title("Classify blood cells")
st.caption("Decision support for qualified staff: every answer is to be checked by a person.")

choices = ui.model_choices()
for note in choices.notes:
    st.caption(note)
if not choices.ids:
    st.error(
        "No trained model is available. Train one on the Training page or with `python -m bloodcell train`."
    )
    st.stop()
if choices.warning:
    st.warning(choices.warning)
wanted = ui.chosen("Model", choices.ids, "classify_model", help="The first entry is the default model.")
uploads = st.file_uploader(
    "Pictures: single cells, or microscope fields with many cells",
    type=[e.lstrip(".") for e in images.EXTENSIONS],
    accept_multiple_files=True,
)
example = [] if uploads else ui.example_files()
if not uploads and not example:
    st.info("Upload one image, or a whole slide's worth at once.")
    st.stop()
if len(uploads) > ui.MAX_FILES:
    st.warning(
        f"A batch holds at most {ui.MAX_FILES} pictures: the first {ui.MAX_FILES} are answered. "
        f"Please upload the other {len(uploads) - ui.MAX_FILES} as another batch."
    )
files = [(f.name, f.getvalue()) for f in uploads[: ui.MAX_FILES]] or example
mode = st.radio(
    "Pictures are",
    ["decided per picture", "single cells", "microscope fields"],
    horizontal=True,
    help="A field (a camera's frame, or a picture with three or more white cells) gets every cell "
    "found, classified and counted; a single cell's picture gets its cell nearest the centre.",
)
as_field = [
    mode == "microscope fields" or (mode == "decided per picture" and ui.is_field(data)) for _, data in files
]
field_files = [f for f, field in zip(files, as_field, strict=True) if field]
files = [f for f, field in zip(files, as_field, strict=True) if not field]
st.caption(
    f"Answered as single cells: {len(files)}; as microscope fields: {len(field_files)}"
    + (" (decided per picture; choose above to override)." if mode == "decided per picture" else ".")
)

adapt = st.toggle(
    "These cells all come from one laboratory: adapt to its stain and camera first",
    help=f"For a batch of at least {MIN_LAB_CELLS} cells from one microscope: the model takes that "
    "batch's image statistics in place of the training laboratory's (no labels needed), then answers.",
    disabled=len(files) < MIN_LAB_CELLS,
)
try:
    classifier, failures = ui.serving(wanted, choices.ids)
except runs.RunError as error:
    st.error(f"{error} No model can answer; train one on the Training page.")
    st.stop()
run_id = classifier.run.id
if failures:
    st.warning(f"{' '.join(failures)} The answers below come from model run {run_id} instead.")
answers, not_adapted = ui.answers(classifier, files, adapt=adapt) if files else ([], None)
fields = ui.fields(classifier, field_files) if field_files else []
st.caption(f"Answered by model run `{run_id}`.")
if not_adapted:
    st.warning(f"{not_adapted} The cells are answered without adapting.")
elif adapt:
    st.caption(f"Adapted to this batch of {len(files)} pictures without labels.")
for answer in (a for a in answers + fields if a.error):
    st.warning(f"**{ui.markdown_text(answer.file)}**: {answer.error}")
for answer in (a for a in answers if a.note):
    st.warning(f"**{ui.markdown_text(answer.file)}**: {answer.note}")
good = [(a, data) for a, (_, data) in zip(answers, files, strict=True) if not a.error]
field_cells = [cell for field in fields for cell in field.cells]

for field, (_, data) in zip(fields, field_files, strict=True):
    if field.error:
        continue
    st.subheader(f"{ui.markdown_text(field.file)}: {len(field.cells)} cells, {field.platelets} platelets")
    left, right = st.columns(2)
    left.image(ui.field_picture(data, field), width="stretch")
    right.dataframe(
        [
            {
                "cell": n,
                "class": DISPLAY_NAMES[c.label],
                "confidence": c.probabilities[c.label],
                "status": c.status,
            }
            for n, c in enumerate(field.cells, start=1)
        ],
        column_config={
            "confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)
        },
        hide_index=True,
    )
    if not field.cells:
        right.info("No white cell was found in this field.")

if len(good) == 1 and not fields:
    answer, data = good[0]
    left, right = st.columns(2)
    left.image(
        ui.heat_map(classifier, data, answer.label),
        caption=f"{ui.markdown_text(answer.file)}: heat map of what drove '{DISPLAY_NAMES[answer.label]}'",
        width="stretch",
    )
    left.image(ui.picture(data), caption="Original", width=160)
    right.metric("Class", DISPLAY_NAMES[answer.label])
    right.metric("Probability", f"{answer.probabilities[answer.label]:.1%}")
    right.markdown(f"**Status:** {STATUS_TEXT[answer.status]}")
    chart = go.Figure(
        go.Bar(
            x=list(answer.probabilities.values()),
            y=[DISPLAY_NAMES[c] for c in answer.probabilities],
            orientation="h",
        )
    )
    chart.update_layout(xaxis={"title": "calibrated probability", "range": [0, 1]})
    right.plotly_chart(chart, width="stretch")
elif good or field_cells:
    if good:
        st.subheader(f"{len(good)} single cells")
        st.dataframe(
            [
                {
                    "image": ui.thumbnail(data),
                    "file": a.file,
                    "class": DISPLAY_NAMES[a.label],
                    "confidence": a.probabilities[a.label],
                    "status": a.status,
                }
                for a, data in good
            ],
            column_config={
                "image": st.column_config.ImageColumn(width="small"),
                "confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            },
            hide_index=True,
        )
    answers = answers + [a for field in fields for a in field.answers()]
    counts = report.differential(answers, field_platelets=sum(f.platelets for f in fields))
    st.subheader("Differential count")
    st.caption("From confidently classified cells only; the others are held out for review below.")
    ui.white_cells_table(counts)
    cols = st.columns(4)
    cols[0].metric("White cells counted", counts["white_cells"])
    per_100 = counts["erythroblasts_per_100_white"]
    cols[1].metric("Erythroblasts / 100 white cells", "–" if per_100 is None else f"{per_100:.1f}")
    cols[2].metric("Platelets (counted apart)", counts["platelets"])
    cols[3].metric("Held for review", len(counts["for_review"]))
    if counts["for_review"]:
        st.markdown("**For review:** " + ", ".join(ui.markdown_text(f) for f in counts["for_review"]))
    left, right = st.columns(2)
    left.download_button(
        "Download differential (CSV)", report.differential_csv(counts, run_id), "differential.csv"
    )
    right.download_button("Download all cells (CSV)", report.cells_csv(answers, run_id), "cells.csv")

if good or field_cells:
    st.divider()
    review_ui.save_as_case(
        classifier,
        good,
        [(field, data) for field, (_, data) in zip(fields, field_files, strict=True)],
        adapted_to=len(files) if adapt and not not_adapted else 0,
    )
