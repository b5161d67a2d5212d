"""The Settings page's API tokens panel under Streamlit's AppTest, on the real job
database (no Weaviate needed): an admin makes a token, sees it once, sees it listed with
its role and knowledge bases, and revokes it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from memsys import Settings
from memsys.engine import Engine

from conftest import REPO
from dashboard_support import memsys_env

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def panel() -> None:
    from components.token_views import api_tokens_panel

    api_tokens_panel()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    values = memsys_env(tmp_path / "data")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in values.items():
            mp.setenv(name, value)
        mp.delenv("OPENAI_API_KEY", raising=False)
        mp.chdir(tmp_path)
        yield values
        st.cache_resource.clear()


def test_an_admin_makes_a_token_sees_it_once_and_revokes_it(env: dict[str, str]) -> None:
    at = AppTest.from_function(panel, default_timeout=60)
    at.run()
    assert any("No API tokens yet" in c.value for c in at.caption)
    at.text_input[0].input("support agents")
    at.selectbox[0].select("operator")
    at.text_input[1].input("support, billing")
    at.button[0].click()
    at.run()
    token = at.code[0].value
    assert token.startswith("msk_") and any("shown only this once" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["support agents"] and list(table["Role"]) == ["operator"]
    assert list(table["Knowledge bases"]) == ["support, billing"] and token not in table.to_string()
    at.run()
    assert not at.code, "the token is shown once only"
    stored = Engine(Settings.load(env=env, secrets_path=Path("/nonexistent")))
    try:
        assert stored.tokens.authenticate(token) is not None
        [b for b in at.button if b.label == "Revoke"][0].click()
        at.run()
        assert list(at.dataframe[0].value["State"]) == ["revoked"]
        assert stored.tokens.authenticate(token) is None
    finally:
        stored.close()
