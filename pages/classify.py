"""Clinical page: upload cell images, get class, probabilities and status."""

import plotly.express as px
import streamlit as st

from bloodcell import images, ui
from bloodcell.classes import DISPLAY_NAMES

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

answers = ui.classifier(run_id).predict([(f.name, f.getvalue()) for f in uploads])
for answer in (a for a in answers if a.error):
    st.warning(f"**{answer.file}**: {answer.error}")
good = [(a, f) for a, f in zip(answers, uploads, strict=True) if not a.error]

if len(good) == 1:
    answer, upload = good[0]
    left, right = st.columns(2)
    left.image(upload.getvalue(), caption=answer.file, width="stretch")
    right.metric(
        "Class", DISPLAY_NAMES[answer.label], f"{answer.probabilities[answer.label]:.1%} · {answer.status}"
    )
    chart = px.bar(
        x=list(answer.probabilities.values()),
        y=[DISPLAY_NAMES[c] for c in answer.probabilities],
        orientation="h",
        labels={"x": "probability", "y": ""},
        range_x=[0, 1],
    )
    right.plotly_chart(chart, width="stretch")
elif good:
    st.dataframe(
        [
            {
                "file": a.file,
                "class": DISPLAY_NAMES[a.label],
                "confidence": a.probabilities[a.label],
                "status": a.status,
            }
            for a, _ in good
        ],
        column_config={
            "confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)
        },
        hide_index=True,
    )
