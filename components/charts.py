"""A chart with its data one click away: the plotly figure, then a CSV of exactly the
table it was drawn from."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components.tables import csv_text


def chart_with_data(figure: go.Figure, data: pd.DataFrame, name: str) -> None:
    st.plotly_chart(figure, width="stretch", key=f"chart_{name}", config={"displaylogo": False})
    st.download_button(
        "Data as CSV", csv_text(data), file_name=f"{name}.csv", mime="text/csv",
        icon=":material/download:", key=f"csv_{name}",
    )
