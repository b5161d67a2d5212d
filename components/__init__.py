"""Streamlit pieces the pages share: the process-wide engine, error display, and small
widgets. Kept apart from `memsys/` because the engine never imports Streamlit."""
