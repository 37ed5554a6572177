"""Research page: every stored run, and side-by-side comparison of the chosen ones."""

from itertools import islice
from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from bloodcell import images, results, runs
from bloodcell.classes import DISPLAY_NAMES

st.title("Training results")
rows = results.table()
if not rows:
    st.info("No runs yet: train one on the Training page or with `python -m bloodcell train`.")
    st.stop()

left, right = st.columns(2)
archs = left.multiselect("Architecture", sorted({r["architecture"] for r in rows if r["architecture"]}))
statuses = right.multiselect("Status", sorted({r["status"] for r in rows}))
shown = [
    r for r in rows if (not archs or r["architecture"] in archs) and (not statuses or r["status"] in statuses)
]
st.dataframe(
    shown,
    hide_index=True,
    column_config={
        k: st.column_config.NumberColumn(format="percent")
        for k in ("accuracy", "balanced accuracy", "macro-F1", "CV accuracy")
    },
)

scored = [r["run"] for r in shown if r["accuracy"] is not None]
try:
    default = [runs.default_id()]
except runs.RunError:
    default = []
picked = st.multiselect(
    "Compare runs", scored, default=[r for r in default if r in scored] or scored[:1], max_selections=6
)
if not picked:
    st.stop()
chosen = [runs.get(run_id) for run_id in picked]

st.subheader("Metrics")
bars = [
    {"run": run.id, "metric": label, "value": (run.metrics or {}).get(key)}
    for run in chosen
    for key, label in (
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("macro_f1", "macro-F1"),
    )
]
figure = px.bar(bars, x="metric", y="value", color="run", barmode="group")
figure.update_yaxes(range=[min((b["value"] or 0) for b in bars) - 0.02, 1.0], tickformat=".1%")
st.plotly_chart(figure, width="stretch")

st.subheader("Recall per class")
recall = [
    {"run": run.id, "class": DISPLAY_NAMES.get(name, name), "recall": value}
    for run in chosen
    for name, value in results.per_class(run).items()
]
st.plotly_chart(px.bar(recall, x="class", y="recall", color="run", barmode="group"), width="stretch")

st.subheader("Confusion matrices")
normalized = st.toggle("Normalize rows (fraction of each true class)")
for column, run in zip(st.columns(min(len(chosen), 2)) * 3, chosen, strict=False):
    labels, matrix = results.confusion(run, normalize=normalized)
    names = [DISPLAY_NAMES.get(n, n) for n in labels]
    heat = px.imshow(
        matrix,
        x=names,
        y=names,
        text_auto=".2f" if normalized else True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "true", "color": "fraction" if normalized else "images"},
    )
    heat.update_layout(title=run.id, height=480)
    column.plotly_chart(heat, width="stretch")

st.subheader("Test images answered wrongly")
try:
    found = results.misses(chosen)
except ValueError as error:
    st.info(f"Not shown: {error}")
else:
    if len(chosen) == 1:
        st.caption(f"{found['missed_by_any']} of {found['n']} test images are answered wrongly.")
    else:
        st.caption(
            f"{found['missed_by_any']} of {found['n']} test images are missed by at least one of these "
            f"runs, {found['missed_by_all']} by all of them (a vote among these runs gets those wrong too)."
        )
    st.dataframe(
        [
            {"image": i["file"], "class": i["true"], "missed by": i["missed_by"], **i["answers"]}
            for i in found["images"]
        ],
        hide_index=True,
    )
    # most missed first: the first missed_by_all images are those every chosen run misses
    recorded = chosen[0].record.get("dataset", {}).get("root")
    root, everyone = Path(recorded or "."), found["images"][: found["missed_by_all"]] if recorded else []
    hardest = list(islice((i for i in everyone if (root / i["file"]).is_file()), 12))
    if hardest:
        st.caption("Missed by every chosen run (the first 12, from the training data's folder):")
        for column, image in zip(st.columns(6) * 2, hardest, strict=False):
            column.image(
                images.load(root / image["file"], 160),
                caption=f"{image['file']}: answered {', '.join(sorted(set(image['answers'].values())))}",
            )

st.subheader("Training curves")
curves = go.Figure()
for run in chosen:
    history = run.history()
    for key in ("accuracy", "val_accuracy"):
        if history and key in history[0]:
            curves.add_scatter(
                x=[h["epoch"] for h in history], y=[h[key] for h in history], name=f"{run.id} {key}"
            )
curves.update_layout(xaxis_title="epoch", yaxis_title="accuracy")
st.plotly_chart(curves, width="stretch")

folds = [
    {"run": run.id, "fold accuracy": value}
    for run in chosen
    for value in ((run.metrics or {}).get("cross_validation") or {}).get("accuracy", {}).get("per_fold", [])
]
if folds:
    st.subheader("Cross-validation spread")
    st.plotly_chart(px.box(folds, x="run", y="fold accuracy", points="all"), width="stretch")

calibrated = [run for run in chosen if run.calibration]
if calibrated:
    st.subheader("Calibration (test split)")
    diagram = go.Figure()
    diagram.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "grey"}
    )
    for run in calibrated:
        for when in ("before", "after"):
            bins = run.calibration["reliability"][when]
            diagram.add_scatter(
                x=[b["confidence"] for b in bins],
                y=[b["accuracy"] for b in bins],
                mode="lines+markers",
                name=f"{run.id} {when} (ECE {run.calibration['test'][when]['ece']:.2%})",
            )
    diagram.update_layout(xaxis_title="confidence", yaxis_title="accuracy", height=420)
    st.plotly_chart(diagram, width="stretch")
    st.dataframe(
        [
            {
                "run": run.id,
                "temperature": run.calibration["temperature"],
                "review below": run.calibration["review"]["threshold"],
                "validation coverage": run.calibration["review"]["coverage"],
                **{f"test {k}": v for k, v in run.calibration["test_status"].items()},
            }
            for run in calibrated
        ],
        hide_index=True,
    )

for run in chosen:
    st.download_button(
        f"Download the record of {run.id}", results.record_json(run), f"{run.id}.json", key=run.id
    )
