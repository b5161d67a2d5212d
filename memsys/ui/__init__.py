"""Plain helpers the dashboard pages share: numbers and times as people read them, errors
as sentences with a next step, the settings a browser session may change, and plotly
charts built from engine data. Nothing here imports Streamlit, so all of it is tested
directly.
"""
