"""Research page: every stored run, and side-by-side comparison of the chosen ones."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from bloodcell import images, results, review_ui, runs, ui
from bloodcell.classes import DISPLAY_NAMES

ui.inside_navigation()

st.title("Training results")
rows = results.table()
if not rows:
    st.info("No runs yet: train one on the Training page or with `python -m bloodcell train`.")
    st.stop()
for row in rows:
    if row["note"]:
        st.warning(row["note"])

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
    }
    | {"note": None},
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
chosen = [results.read(runs.get(run_id)) for run_id in picked]
for stored in chosen:
    if stored.note:
        st.warning(stored.note)

st.subheader("Metrics")
bars = [
    {"run": stored.run.id, "metric": label, "value": stored.metrics.get(key)}
    for stored in chosen
    for key, label in (
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("macro_f1", "macro-F1"),
    )
]
figure = px.bar(bars, x="metric", y="value", color="run", barmode="group")
figure.update_yaxes(range=[min((b["value"] or 0) for b in bars) - 0.02, 1.0], tickformat=".1%")
st.plotly_chart(figure, width="stretch")

recall = [
    {"run": stored.run.id, "class": DISPLAY_NAMES.get(name, name), "recall": value}
    for stored in chosen
    for name, value in results.per_class(stored).items()
]
if recall:
    st.subheader("Recall per class")
    st.plotly_chart(px.bar(recall, x="class", y="recall", color="run", barmode="group"), width="stretch")

confused = [stored for stored in chosen if stored.confusion]
if confused:
    st.subheader("Confusion matrices")
    normalized = st.toggle("Normalize rows (fraction of each true class)")
    for column, stored in zip(st.columns(min(len(confused), 2)) * 3, confused, strict=False):
        labels, matrix = results.confusion(stored, normalize=normalized)
        names = [DISPLAY_NAMES.get(n, n) for n in labels]
        heat = px.imshow(
            matrix,
            x=names,
            y=names,
            text_auto=".2f" if normalized else True,
            color_continuous_scale="Blues",
            labels={"x": "predicted", "y": "true", "color": "fraction" if normalized else "images"},
        )
        heat.update_layout(title=stored.run.id, height=480)
        column.plotly_chart(heat, width="stretch")

st.subheader("Test images answered wrongly")
try:
    found = results.misses([stored.run for stored in chosen])
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
    hardest = results.missed_pictures(chosen[0].record, found)
    if hardest:
        st.caption("Missed by every chosen run (the first 12, from the training data's folder):")
        for column, (path, image) in zip(st.columns(6) * 2, hardest, strict=False):
            column.image(
                images.load(path, 160),
                caption=f"{image['file']}: answered {', '.join(sorted(set(image['answers'].values())))}",
            )

curved = [stored for stored in chosen if stored.history]
if curved:
    st.subheader("Training curves")
    curves = go.Figure()
    for stored in curved:
        for key in ("accuracy", "val_accuracy"):
            if key in stored.history[0]:
                curves.add_scatter(
                    x=[h["epoch"] for h in stored.history],
                    y=[h[key] for h in stored.history],
                    name=f"{stored.run.id} {key}",
                )
    curves.update_layout(xaxis_title="epoch", yaxis_title="accuracy")
    st.plotly_chart(curves, width="stretch")

folds = [
    {"run": stored.run.id, "fold accuracy": value}
    for stored in chosen
    for value in results.cv_accuracy(stored.metrics, "per_fold") or []
]
if folds:
    st.subheader("Cross-validation spread")
    st.plotly_chart(px.box(folds, x="run", y="fold accuracy", points="all"), width="stretch")

calibrated = [stored for stored in chosen if stored.calibration]
if calibrated:
    st.subheader("Calibration (test split)")
    diagram = go.Figure()
    diagram.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "grey"}
    )
    for stored in calibrated:
        calibration = stored.calibration
        for when in ("before", "after"):
            bins = calibration["reliability"][when]
            diagram.add_scatter(
                x=[b["confidence"] for b in bins],
                y=[b["accuracy"] for b in bins],
                mode="lines+markers",
                name=f"{stored.run.id} {when} (ECE {calibration['test'][when]['ece']:.2%})",
            )
    diagram.update_layout(xaxis_title="confidence", yaxis_title="accuracy", height=420)
    st.plotly_chart(diagram, width="stretch")
    st.dataframe(
        [
            {
                "run": stored.run.id,
                "temperature": stored.calibration["temperature"],
                "review below": stored.calibration["review"]["threshold"],
                "validation coverage": stored.calibration["review"]["coverage"],
                **{f"test {k}": v for k, v in stored.calibration["test_status"].items()},
            }
            for stored in calibrated
        ],
        hide_index=True,
    )

for stored in chosen:
    st.download_button(
        f"Download the record of {stored.run.id}",
        results.record_json(stored),
        f"{stored.run.id}.json",
        key=stored.run.id,
    )

review_ui.agreement_table()
