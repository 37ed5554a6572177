"""Research page: start a training job in the background and follow it."""

import plotly.graph_objects as go
import streamlit as st

from bloodcell import archs, datasets, jobs, training, ui

ui.inside_navigation()

st.title("Train a model")
folders = datasets.configured()
if not folders:
    st.warning("No data folder is configured: set BLOODCELL_DATA to folders with one sub-folder per class.")
    st.stop()

with st.form("train"):
    left, right = st.columns(2)
    data = left.selectbox("Dataset", list(folders))
    arch = right.selectbox(
        "Architecture", list(archs.REGISTRY), format_func=lambda n: f"{n}: {archs.get(n).description}"
    )
    a, b, c = st.columns(3)
    image_size = a.number_input(
        "Image size (px, 0: the architecture's)", 0, training.MAX_IMAGE_SIZE, 0, step=8
    )
    crop = b.slider(
        "Central crop", 0.3, 1.0, 1.0, 0.01, help="share of the image's side the network sees; 1: all of it"
    )
    epochs = c.number_input("Epochs", 1, 500, 30)
    batch_size = a.number_input("Batch size", 1, training.MAX_BATCH_SIZE, 64)
    optimizer = a.selectbox("Optimizer", training.OPTIMIZERS)
    learning_rate = b.number_input("Learning rate", 1e-6, 1.0, 2e-3, format="%.5f")
    schedule = c.selectbox("Schedule", training.SCHEDULES)
    weight_decay = a.number_input("Weight decay", 0.0, 0.1, 5e-4, format="%.5f")
    label_smoothing = b.number_input("Label smoothing", 0.0, 0.5, 0.1)
    folds = c.selectbox(
        "Cross-validation folds", [0, 5, 3, 10], help="0: one stratified 70/30 split, 20% validation"
    )
    augment = a.checkbox("Augmentation", True)
    framing = b.checkbox(
        "Frame the cell", help="find the cell in each picture and frame it at its own size, white-balanced"
    )
    stain_augment = c.checkbox(
        "Other laboratories' stains", help="augment stain mixing, zoom, blur and noise as well"
    )
    shuffle = b.checkbox("Shuffle", True)
    balance = c.radio("Class imbalance", ["none", "class weights", "SMOTE"], horizontal=True)
    weights = a.selectbox(
        "Backbone weights", ["none", "imagenet"], help="ImageNet weights need internet access"
    )
    head_epochs = b.number_input("SupCon classifier epochs", 1, 100, 5)
    fine_tune = c.checkbox("SupCon fine-tuning")
    seed = a.number_input("Seed", 0, 2**31 - 1, 0)
    strategy = b.selectbox(
        "Devices", ["default", "mirrored"], help="mirrored: every GPU of this machine (TensorFlow)"
    )
    mixed_precision = c.checkbox("Mixed precision", help="bfloat16 on CPUs that have it, float16 on GPUs")
    stream = a.checkbox("Read images from their files", help="for datasets larger than memory")
    submitted = st.form_submit_button("Start training", type="primary")

if submitted:
    try:
        config = training.TrainConfig(
            arch=arch,
            data=str(folders[data]),
            image_size=image_size or None,
            crop=crop,
            framing=framing,
            stain_augment=stain_augment,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            learning_rate=learning_rate,
            schedule=schedule,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            folds=folds,
            augment=augment,
            shuffle=shuffle,
            class_weights=balance == "class weights",
            smote=balance == "SMOTE",
            weights=weights,
            head_epochs=head_epochs,
            fine_tune=fine_tune,
            seed=seed,
            strategy=strategy,
            mixed_precision=mixed_precision,
            stream=stream,
        )
        jobs.start(config)
        st.success("Training started. It runs on in the background even if you close this page.")
    except (ValueError, jobs.JobError, OSError) as error:
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
