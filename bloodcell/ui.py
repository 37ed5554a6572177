"""The one Streamlit-aware module of the library: cached model loading for the pages."""

import streamlit as st

from bloodcell import runs
from bloodcell.predictor import Classifier


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def classifier(run_id: str) -> Classifier:
    """One loaded model per run id and process, shared by every session."""
    return Classifier(runs.get(run_id))


def model_choices() -> list[str]:
    """Run ids that can serve predictions, the default first."""
    try:
        default = [runs.default_id()]
    except runs.RunError:
        default = []
    served = [r.id for r in runs.all_runs() if r.has_model and r.status == "finished" and r.id not in default]
    return default + served


def thumbnail(data: bytes, size: int = 64) -> str | None:
    """A small PNG data URI of an uploaded image for tables; None if it cannot be read."""
    import base64
    import io

    from PIL import Image

    from bloodcell import images

    try:
        rgb = images.read_image(data)
    except images.UnusableImage:
        return None
    picture = Image.fromarray(rgb)
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
