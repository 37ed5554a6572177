"""About: intended use and the default model's card."""

import streamlit as st

from bloodcell import results, runs, ui

ui.inside_navigation()

st.title("About bloodcell")
st.markdown(
    """
**Intended use.** Decision support for qualified laboratory staff reviewing peripheral blood
smears, and a research tool for comparing models. It does not make a diagnosis; every answer is
to be checked by a person.

**Limits.** Trained on normal cells only, imaged at one laboratory (Hospital Clinic of Barcelona)
with one stain and one scanner (CellaVision DM96). Blasts, abnormal lymphocytes, other stains or
scanners are outside what it has seen.

**Data.** Acevedo A. et al., *A dataset of microscopic peripheral blood cell images for
development of automatic recognition systems*, Data in Brief 30 (2020) 105474, CC BY 4.0.
"""
)
try:
    stored = results.summary(runs.resolve(None))
except runs.RunError as error:
    st.warning(str(error))
    st.stop()
if stored.note:
    st.warning(stored.note)
run, record, metrics = stored.run, stored.record, stored.metrics
st.subheader("Default model")
cols = st.columns(4)
cols[0].metric("Architecture", record.get("arch", "?"))
cols[1].metric("Input size", results.pixels(record))
cols[2].metric("Test accuracy", f"{metrics.get('accuracy', 0):.2%}")
cols[3].metric("Macro-F1", f"{metrics.get('macro_f1', 0):.2%}")
interval = metrics.get("accuracy_ci95")
st.caption(
    f"Run {run.id}: trained on {record.get('split', {}).get('train', '?')} images, "
    f"tested on {metrics.get('n', 0)}"
    + (f" (accuracy 95% interval {interval[0]:.1%} to {interval[1]:.1%})." if interval else ".")
)
