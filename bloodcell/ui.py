"""The one Streamlit-aware module of the library: model loading, answers and pictures for the
pages, cached, and the page helpers that keep a clinician's choices and file names intact."""

import base64
import hashlib
import io
import re
import threading
import time
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from bloodcell import images, runs
from bloodcell.classes import DISPLAY_NAMES, WHITE_CELLS
from bloodcell.predictor import Classifier, FieldAnswer, Prediction

# Pictures answered per batch: a 200-cell differential fits with room to spare, and the page
# answers within a minute on a laptop's CPU.
MAX_FILES = 300
DISPLAY_SIDE = 320  # pixels on the longer side of a picture shown on a page
# Box colours of the cells of a field, one per class (Okabe-Ito, told apart by colour-blind eyes).
CLASS_COLOURS = {
    "basophil": "#000000",
    "eosinophil": "#E69F00",
    "erythroblast": "#CC79A7",
    "ig": "#D55E00",
    "lymphocyte": "#0072B2",
    "monocyte": "#009E73",
    "neutrophil": "#56B4E9",
    "platelet": "#F0E442",
}
# ASCII punctuation that Markdown, Streamlit's directives (:red[...]) and LaTeX ($) may read
# inside a line, and the dot of "www." (a link by itself in GitHub-flavoured Markdown); "." "-"
# and "," start nothing mid-line, so common file names stay readable in the page's source.
MARKDOWN_SPECIAL = re.compile(r"[!-+/:-@\[-`{-~]|(?i:(?<=www))\.")


ROUTED = "routed by app.py"  # set by app.py before it runs a page


def inside_navigation() -> None:
    """Call first on every page. Until some session has run app.py's `st.navigation`, Streamlit
    runs a page file alone on a first visit by link (a bookmark after a restart), with the raw
    file list as its sidebar; such a run goes through app.py instead, at the same URL."""
    if not st.session_state.pop(ROUTED, False):
        import runpy
        from pathlib import Path

        runpy.run_path(str(Path(__file__).resolve().parent.parent / "app.py"))
        st.stop()


def classifier(run_id: str) -> Classifier:
    """The model of run `run_id`, loaded once per process and shared by every session; loaded
    again when what serving reads changes (a rescored run: `runs.Run.serving_digest`)."""
    return _classifier(run_id, runs.get(run_id).serving_digest())


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def _classifier(run_id: str, serving_digest: str) -> Classifier:
    return Classifier(runs.get(run_id))


WARM_UP_AFTER_S = 1.5  # a first page draws in about that long on 2 cores


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Load the default model and answer one generated picture with its heat map, in a thread
    started once per server (app.py calls this on every run; the cache makes it once), so the
    pages draw at once and the first upload finds the model loaded and traced. Someone who
    uploads sooner waits for the same load, not for a second one (`_classifier`'s cache)."""
    # not a daemon (a thread made by a script thread would inherit it): the interpreter waits for
    # it at exit instead of unwinding it out of TensorFlow's C++ code, which aborts the process
    thread = threading.Thread(target=_warm, name="bloodcell-warm-up", daemon=False)
    thread.start()
    return thread


def _warm() -> None:
    # Importing TensorFlow holds the interpreter for seconds: let the first page draw first.
    time.sleep(WARM_UP_AFTER_S)
    try:
        run_id = runs.default_id()
        model = _classifier(run_id, runs.get(run_id).serving_digest())
        picture = np.full((96, 96, 3), (235, 225, 230), np.uint8)
        picture[32:64, 32:64] = (120, 40, 160)
        data = _png(picture)
        model.predict([("warm-up", data)])
        model.heat_map(data, model.classes[0], display=DISPLAY_SIDE)
    except Exception:  # noqa: BLE001 - the page that needs the model reports what is wrong with it
        return


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class ModelChoices:
    """The runs that can serve predictions, the default first, then the newest; a note for each
    damaged run left out, and a warning where the default model cannot serve."""

    ids: list[str]
    notes: list[str]
    warning: str | None = None


def model_choices() -> ModelChoices:
    """The finished runs that kept a model; a damaged run (an unreadable run.json) is left out
    with a note instead of taking the page down."""
    served, notes = [], []
    for run in runs.all_runs():
        try:
            if run.has_model and run.status == "finished":
                served.append(run.id)
        except runs.RunError as error:
            notes.append(f"{error} It is left out of the models to choose from.")
    try:
        default = runs.default_id()
    except runs.RunError as error:
        return ModelChoices(served, notes, f"{error} The newest model serves instead." if served else None)
    if default in served:
        return ModelChoices([default, *(i for i in served if i != default)], notes)
    warning = (
        f"The default model, run {default}, is missing, unfinished or damaged; "
        "the newest model serves instead."
    )
    return ModelChoices(served, notes, warning if served else None)


def serving(wanted: str, ids: list[str]) -> tuple[Classifier, list[str]]:
    """The classifier of run `wanted`, else of the first run of `ids` that loads (the default,
    then the newest), and a sentence for each model that would not load (a model file that fails
    its checksum). Raises `runs.RunError` where none loads."""
    failures = []
    for run_id in [wanted, *(i for i in ids if i != wanted)]:
        try:
            return classifier(run_id), failures
        except runs.RunError as error:
            failures.append(str(error))
    raise runs.RunError(" ".join(failures) or "There is no model to load.")


def chosen(label: str, options: list[str], memory: str, help: str | None = None) -> str:
    """A select box whose choice survives changes of `options` (a training run finishing) and
    page switches: it is remembered in the session under `memory`; the first option is chosen
    where the remembered one is gone."""
    remembered = st.session_state.get(memory)
    value = st.selectbox(
        label, options, index=options.index(remembered) if remembered in options else 0, help=help
    )
    st.session_state[memory] = value
    return value


def answers(
    model: Classifier, files: list[tuple[str, bytes]], adapt: bool = False
) -> tuple[list[Prediction], str | None]:
    """`model`'s answer to each (name, image bytes), adapted to the batch if asked
    (`Classifier.predict`), and why it could not be adapted (None where it was, or was not asked).

    Cached by the files' names and contents, the run and what serving it reads: a rerun of the
    page (a download, a click) decodes and computes nothing again."""
    return _batch(model, files, "adapted cells" if adapt else "cells")


def _batch(model: Classifier, files: list[tuple[str, bytes]], kind: str):
    """The cached answer of `kind` to a batch: keyed on the run, what serving it reads, and the
    files' names and contents."""
    return _answered(
        model.run.id,
        model.run.serving_digest(),
        tuple(name for name, _ in files),
        tuple(_digest(data) for _, data in files),
        kind,
        tuple(data for _, data in files),
    )


@st.cache_data(max_entries=32, show_spinner="Classifying…")
def _answered(
    run_id: str,
    serving_digest: str,
    names: tuple[str, ...],
    digests: tuple[str, ...],
    kind: str,
    _data: tuple[bytes, ...],
):
    model = _classifier(run_id, serving_digest)
    sources = list(zip(names, _data, strict=True))
    if kind == "fields":
        fields = model.predict_fields(sources)
        for field in fields:
            for n, cell in enumerate(field.cells, start=1):
                cell.file = f"{field.file} #{n}"
        return fields
    if kind == "adapted cells":
        try:
            return model.predict(sources, adapt=True), None
        except ValueError as error:  # too few usable cells to stand for a laboratory
            return model.predict(sources), str(error)
    return model.predict(sources), None


def is_field(data: bytes) -> bool:
    """Whether an uploaded picture is a microscope field rather than one cell's (`finder.look`);
    False for a picture that cannot be read (its answer says why)."""
    seen = _seen(_digest(data), data)
    return seen is not None and seen[1]


def fields(model: Classifier, files: list[tuple[str, bytes]]) -> list[FieldAnswer]:
    """`model`'s answers to every cell of each microscope field (name, image bytes), cached like
    `answers`; each cell's file reads "name #n", its number on the drawn field."""
    return _batch(model, files, "fields")


def field_picture(data: bytes, answer: FieldAnswer) -> np.ndarray:
    """The field with each cell's box, numbered and coloured by its class, at most
    `DISPLAY_SIDE` * 2 pixels on its longer side."""
    from PIL import ImageDraw

    rgb = images.read_image(data)
    scale = min(1.0, 2 * DISPLAY_SIDE / max(rgb.shape[:2]))
    shown = Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)))
    draw = ImageDraw.Draw(shown)
    for n, cell in enumerate(answer.cells, start=1):
        box = [round(v * scale) for v in cell.box]
        colour = CLASS_COLOURS[cell.label]
        draw.rectangle(box, outline=colour, width=3)
        draw.text((box[0] + 4, box[1] + 2), str(n), fill=colour)
    return np.asarray(shown)


def heat_map(model: Classifier, data: bytes, class_name: str) -> np.ndarray:
    """`Classifier.heat_map` of an uploaded picture, cached like `answers`."""
    return _heat_map(model.run.id, model.run.serving_digest(), _digest(data), class_name, data)


@st.cache_data(max_entries=32, show_spinner=False)
def _heat_map(run_id: str, serving_digest: str, digest: str, class_name: str, _data: bytes) -> np.ndarray:
    return _classifier(run_id, serving_digest).heat_map(_data, class_name, display=DISPLAY_SIDE)


def picture(data: bytes) -> np.ndarray | None:
    """An uploaded picture as the loader decodes it (any bit depth or mode, turned upright), at
    most `DISPLAY_SIDE` pixels on its longer side; None if it cannot be read."""
    seen = _seen(_digest(data), data)
    return None if seen is None else seen[0]


@st.cache_data(max_entries=4 * MAX_FILES, show_spinner=False)
def _seen(digest: str, _data: bytes) -> tuple[np.ndarray, bool] | None:
    """What the page shows of a picture, and whether it is a field: one decode for both."""
    from bloodcell import finder

    try:
        rgb = images.read_image(_data)
    except images.UnusableImage:
        return None
    height, width = rgb.shape[:2]
    scale = DISPLAY_SIDE / max(height, width)
    shown = (
        rgb
        if scale >= 1
        else images.resize_to(rgb, max(1, round(width * scale)), max(1, round(height * scale)))
    )
    return shown, finder.look(rgb)[1]


def thumbnail(data: bytes, size: int = 64) -> str | None:
    """A small PNG data URI of an uploaded image for tables; None if it cannot be read."""
    return _thumbnail(_digest(data), size, data)


@st.cache_data(max_entries=4 * MAX_FILES, show_spinner=False)
def _thumbnail(digest: str, size: int, _data: bytes) -> str | None:
    seen = _seen(digest, _data)
    if seen is None:
        return None
    small = Image.fromarray(seen[0])
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def example_files() -> list[tuple[str, bytes]]:
    """Example pictures at one click (`bloodcell.examples`): pills under the uploader, and the
    chosen picture as (name, bytes), like an upload; [] where none is chosen or none is here."""
    from bloodcell import examples

    offered = {e.name: e for e in examples.available()}
    if not offered:
        return []
    chosen = st.pills(
        "No pictures at hand? Try an example",
        list(offered),
        format_func=lambda name: name.removesuffix(".jpg").replace("-", " "),
        key="classify_example",
        help="Cells from the PBC dataset (Barcelona, CellaVision) and fields from the BCCD dataset.",
    )
    if chosen is None:
        return []
    st.caption(f"Example {chosen}: {offered[chosen].credit}.")
    return [(chosen, offered[chosen].read())]


def markdown_text(text: str) -> str:
    """`text` (an uploaded file's name) to show literally within a line of Markdown: the marks
    that could make a link, image, formatting, colour or formula of it are backslash-escaped, and
    line breaks become spaces."""
    return MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(), " ".join(text.splitlines()))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def white_cells_table(counts: dict) -> None:
    """The white cells of a differential count (`report.differential`) as a table on the page."""
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
