"""Start the dashboard: `python -m components.serve [streamlit options]` runs
`streamlit run app.py` with those options, in this process, behind memsys's HTTP guard.

Why not `streamlit run app.py` itself: with a `pages/` folder beside app.py, Streamlit
decides on the first request a server gets whether the app is a legacy multipage app.
If that request opens a page's address (`/memories`) before any session has run app.py,
the page runs on its own, without app.py's navigation and sign-in, and the sidebar lists
the files. Marking the app as an `st.navigation` app before the server starts makes every
request go through app.py.

The guard (memsys/http_guard.py) stands in front of Streamlit's ASGI application: every
request and websocket handshake must name the dashboard by a name it is served under, come
from its own origin, and, without sign-in, carry the token of the data directory; every
answer refuses framing by other sites. Streamlit builds its application in
`starlette_server.create_starlette_app`; this module wraps what that returns, and refuses to
start if Streamlit no longer builds it there (a dashboard without the guard never runs).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from streamlit import config
from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli
from streamlit.web.server.starlette import starlette_server

from components.resources import sign_in_configured
from memsys.config import ConfigError, Settings
from memsys.http_guard import LOOPBACK_NAMES, TOKEN_PARAMETER, GuardMiddleware, HttpGuard, read_or_create_token

APP = Path(__file__).resolve().parent.parent / "app.py"
_WILDCARDS = ("", "0.0.0.0", "::")  # noqa: S104 - names of "every interface", not an address to allow


def main(argv: list[str]) -> int:
    PagesManager.uses_pages_directory = False  # app.py's st.navigation decides, from the first request on
    build = getattr(starlette_server, "create_starlette_app", None)
    if build is None:
        raise RuntimeError("this Streamlit no longer builds its application in starlette_server.create_starlette_app; "
                           "components/serve.py cannot put memsys's HTTP guard in front of it")

    def guarded_app(runtime: Any) -> GuardMiddleware:
        return GuardMiddleware(build(runtime), dashboard_guard())

    starlette_server.create_starlette_app = guarded_app
    sys.argv = ["streamlit", "run", str(APP), *argv]
    return int(cli.main() or 0)


def dashboard_guard() -> HttpGuard:
    """The guard for this dashboard, from the server's settings and Streamlit's options
    (read once they are parsed): the address it listens on when that is one machine's
    address, the configured public names, and the token unless sign-in protects it or
    the operator turned it off."""
    try:
        settings = Settings.load()
    except ConfigError as e:
        raise SystemExit(f"memsys dashboard: {e}") from None
    address = str(config.get_option("server.address") or "").strip("[]")
    names = settings.allowed_hosts + (() if address in _WILDCARDS or address in LOOPBACK_NAMES else (address,))
    token = None
    if settings.dashboard_token and not sign_in_configured():
        token = read_or_create_token(settings.dashboard_token_path)
    _print_address(address, token, settings)
    place = f"the file {settings.dashboard_token_path.name} of memsys's data directory" if token else ""
    return HttpGuard(names, token, place)


def _print_address(address: str, token: str | None, settings: Settings) -> None:
    """The address to open, on the terminal (never in a log), with the token as Jupyter
    does; Streamlit's own welcome would show it without."""
    config.set_option("logger.hideWelcomeMessage", True)
    shown = "127.0.0.1" if address in _WILDCARDS else (f"[{address}]" if ":" in address else address)
    scheme = "https" if config.get_option("server.sslCertFile") else "http"
    url = f"{scheme}://{shown}:{config.get_option('server.port')}/"
    if token:
        print(f"memsys dashboard: {url}?{TOKEN_PARAMETER}={token}", flush=True)
    else:
        why = "sign-in protects it" if sign_in_configured() else "no token: MEMSYS_DASHBOARD_TOKEN is off"
        print(f"memsys dashboard: {url} ({why})", flush=True)
    if address in _WILDCARDS and not settings.allowed_hosts:
        print("memsys dashboard: served on every interface, but only loopback names are let in until "
              "MEMSYS_ALLOWED_HOSTS lists the names people use to reach it", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
