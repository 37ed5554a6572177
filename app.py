"""bloodcell dashboard: `streamlit run app.py`."""

import streamlit as st

from bloodcell import ui

st.set_page_config(page_title="bloodcell", page_icon=":material/biotech:", layout="wide")
ui.warm_up()  # the default model loads in the background while the first page draws

navigation = st.navigation(
    {
        "Clinical": [
            st.Page("pages/classify.py", title="Classify cells", icon=":material/biotech:", default=True),
            st.Page("pages/review.py", title="Review and sign", icon=":material/fact_check:"),
        ],
        "Research": [
            st.Page("pages/results.py", title="Results", icon=":material/leaderboard:"),
            st.Page("pages/train.py", title="Training", icon=":material/model_training:"),
        ],
        "About": [st.Page("pages/about.py", title="About", icon=":material/info:")],
    }
)
st.session_state[ui.ROUTED] = True  # see ui.inside_navigation
navigation.run()
