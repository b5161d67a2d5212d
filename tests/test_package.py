"""memsys as an installed library: importable from any directory, a `memsys` command equal
to `python -m memsys`, and a script using the guide's API exits without leaving its
Weaviate connection open."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO, free_port

BIN = Path(sys.executable).parent
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def run_elsewhere(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(env or {})
    return subprocess.run(args, cwd=str(cwd), env=full, capture_output=True, text=True, timeout=600)


def test_memsys_imports_from_any_directory(tmp_path: Path) -> None:
    result = run_elsewhere([sys.executable, "-c", "import memsys; print(memsys.__version__); print(memsys.write_memories_batch.__module__)"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [VERSION, "memsys.api"]


def test_the_memsys_command_is_python_dash_m_memsys(tmp_path: Path) -> None:
    command = run_elsewhere([str(BIN / "memsys"), "--version"], tmp_path)
    module = run_elsewhere([sys.executable, "-m", "memsys", "--version"], tmp_path)
    assert command.returncode == module.returncode == 0, command.stderr + module.stderr
    assert command.stdout.strip() == module.stdout.strip() == f"memsys {VERSION}"
    helps = run_elsewhere([str(BIN / "memsys"), "--help"], tmp_path)
    assert "import" in helps.stdout and "jobs" in helps.stdout and "cache" in helps.stdout


def test_a_script_using_the_guides_api_closes_its_connection_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import warnings\nwarnings.simplefilter('always')\n"
        "from memsys import write_memory, count_memories\n"
        "write_memory(content='a script wrote this', project='script', repo='r', agent='a', tags=['x'])\n"
        "print(count_memories(project='script'))\n",
        encoding="utf-8",
    )
    env = {
        "MEMSYS_DATA_DIR": str(tmp_path / "data"),
        "MEMSYS_WEAVIATE_PORT": str(free_port()),
        "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        "MEMSYS_EMBEDDING_PROVIDER": "local",
        "PYTHONWARNINGS": "always",
    }
    result = run_elsewhere([sys.executable, "-X", "dev", str(script)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1"
    assert "was not closed" not in result.stderr, result.stderr
    assert "ResourceWarning" not in result.stderr, result.stderr
