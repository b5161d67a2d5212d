"""The shape of the code, checked with import-linter: the dashboard (pages/, components/)
uses the engine only through its one API (memsys.engine and the public modules), and the
engine never imports the dashboard or Streamlit."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import memsys

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"
# What the dashboard may import from memsys: the engine's API and the types, roles,
# settings, errors and units it speaks in.
PUBLIC = {"memsys.engine", "memsys.access", "memsys.config", "memsys.errors", "memsys.units", "memsys.http_guard"}


def lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), str(config), "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_the_dashboard_reaches_the_engine_only_through_its_api(tmp_path: Path) -> None:
    # Every module of memsys but the public ones, found afresh, so a new module is covered too.
    internal = sorted(f"memsys.{m.name}" for m in pkgutil.iter_modules(memsys.__path__) if f"memsys.{m.name}" not in PUBLIC)
    assert "memsys.store" in internal and "memsys.engine" not in internal
    config = tmp_path / "dashboard.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["memsys", "components", "pages"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "The dashboard uses the engine only through its API"\n'
        'type = "forbidden"\nsource_modules = ["pages", "components"]\n'
        f"forbidden_modules = {internal!r}\nallow_indirect_imports = true\n".replace("'", '"'),
        encoding="utf-8",
    )
    result = lint(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_engine_never_imports_the_dashboard_or_streamlit() -> None:
    result = lint(REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
