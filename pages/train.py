"""Research page: fill the training form (by hand or from a recipe), see how long the job
will take here, start it in the background and follow it. The form is generated from the
options' one declaration (bloodcell.config), so it offers what the command line does."""

import plotly.graph_objects as go
import streamlit as st

from bloodcell import archs, config, datasets, jobs, recipes, runs, ui

ui.inside_navigation()
KEY = "train."

st.title("Train a model")
folders = datasets.configured()
if not folders:
    st.warning("No data folder is configured: set BLOODCELL_DATA to folders with one sub-folder per class.")
    st.stop()


def fill(values: dict) -> None:
    """Put `values` in the form; a missing choice (None) shows as the first one offered."""
    for name, value in values.items():
        kind, arguments = config.BY_NAME[name].widget()
        if value is None and kind == "selectbox":
            value = arguments["options"][0]
        st.session_state[KEY + name] = value


def use(preset: str) -> None:
    try:
        fill(recipes.preset(preset, st.session_state[KEY + "arch"]))
        st.session_state[KEY + "filled"] = f"The form holds {preset}."
    except (ValueError, runs.RunError) as error:
        st.session_state[KEY + "filled"] = f"error: {error}"


@st.cache_data(ttl=600, show_spinner=False)
def image_count(folder: str) -> int:
    return len(datasets.discover(folder))


if KEY + "arch" not in st.session_state:
    fill({**recipes.defaults(), "arch": "cnn"})

st.write("Start from a recipe, then change what you like:")
for column, preset in zip(st.columns(len(recipes.PRESETS)), recipes.PRESETS, strict=True):
    column.button(preset.capitalize(), on_click=use, args=(preset,), width="stretch")
filled = st.session_state.pop(KEY + "filled", "")
if filled.startswith("error: "):
    st.error(filled.removeprefix("error: "))
elif filled:
    st.caption(filled)

data = st.selectbox("Dataset", list(folders), key=KEY + "dataset")
values = {}
for group in config.GROUPS:
    with st.expander(group, expanded=group in config.GROUPS[:2]):  # what most runs set
        columns = st.columns(3)
        shown = [o for o in config.OPTIONS if o.group == group and o.page]
        for k, option in enumerate(shown):
            kind, arguments = option.widget()
            if option.optional and kind == "number_input":
                arguments["value"] = None  # empty: derived, as the label says
            widget = getattr(columns[k % 3], kind)
            values[option.name] = widget(option.label, key=KEY + option.name, **arguments)
st.caption(archs.get(values["arch"]).description)

try:
    chosen = config.TrainConfig(data=str(folders[data]), **values)
    images = image_count(str(folders[data]))
except ValueError as error:
    chosen = None
    st.error(str(error))
if chosen is not None:
    st.info(recipes.estimate(chosen, images).sentence)
if st.button("Start training", type="primary", disabled=chosen is None):
    try:
        jobs.start(chosen)
        st.success("Training started. It runs on in the background even if you close this page.")
    except (jobs.JobError, OSError) as error:
        st.error(str(error))


@st.fragment(run_every=2)
def follow() -> None:
    recent = jobs.all_jobs()
    if not recent:
        st.info("No training job yet.")
        return
    job = recent[0]
    status = job.status
    st.subheader(f"Job {job.id}: {status}")
    run = job.run
    progress = run.progress if run else None
    if progress:
        done = (progress["epoch"] - 1 + progress["batch"] / progress["batches"]) / progress["epochs"]
        left = progress.get("remaining")
        if status != "running":
            eta = ""
        elif left is None:
            eta = ", estimating the time left"
        else:
            eta = f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"
        st.progress(
            min(done, 1.0),
            text=f"epoch {progress['epoch']}/{progress['epochs']}, "
            f"batch {progress['batch']}/{progress['batches']}{eta}",
        )
        curves = progress.get("curves", [])
        if curves:
            figure = go.Figure()
            for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
                if key in curves[0]:
                    figure.add_scatter(x=[c["epoch"] for c in curves], y=[c[key] for c in curves], name=key)
            figure.update_layout(height=300, xaxis_title="epoch")
            st.plotly_chart(figure, width="stretch")
    if status == "failed":
        st.error(f"The job failed: {job.record.get('error', 'see the log')}")
    elif status == "interrupted":
        st.error(
            "The job's process ended without finishing (killed, or the machine restarted); "
            "earlier runs are intact."
        )
    elif status == "finished" and run:
        st.success(
            f"Finished: run {run.id}, test accuracy {(run.metrics or {}).get('accuracy', 0):.2%}. "
            "See Results."
        )
    if status in ("queued", "running") and st.button("Cancel training"):
        if job.cancel():
            st.warning("Cancelling…")
        else:
            st.info("The job's process has already ended; there is nothing to cancel.")
    with st.expander("Log", expanded=status in ("failed", "running", "interrupted")):
        st.code(job.log() or "(empty)")


follow()
