"""Start the dashboard: `python -m components.serve [streamlit options]` runs
`streamlit run app.py` with those options, in this process.

Why not `streamlit run app.py` itself: with a `pages/` folder beside app.py, Streamlit
decides on the first request a server gets whether the app is a legacy multipage app.
If that request opens a page's address (`/memories`) before any session has run app.py,
the page runs on its own, without app.py's navigation and sign-in, and the sidebar lists
the files. Marking the app as an `st.navigation` app before the server starts makes every
request go through app.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parent.parent / "app.py"


def main(argv: list[str]) -> int:
    PagesManager.uses_pages_directory = False  # app.py's st.navigation decides, from the first request on
    sys.argv = ["streamlit", "run", str(APP), *argv]
    return int(cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
