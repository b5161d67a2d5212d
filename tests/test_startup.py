"""Commands that answer at once (TARGETS.md P14): a script's `count_memories()` and the
CLI's commands import only what they use. Checked on the modules a fresh interpreter has
loaded when it is done (never on time): no OpenAI client where nothing is embedded, no
Weaviate client where nothing talks to Weaviate, no S3 client where nothing is backed up
to a bucket. (Their wall times are bench/server.py's P14.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsys import MemorySystem

REPO = Path(__file__).resolve().parent.parent

# Runs `python -m memsys ARGS`, then writes the top-level packages the process loaded
# (at exit, so `--help`'s exit counts too) to the file named first.
_CLI = """
import atexit, json, runpy, sys
def loaded(path=sys.argv[1]):
    with open(path, "w") as out:
        json.dump(sorted({m.split(".")[0] for m in sys.modules}), out)
atexit.register(loaded)
sys.argv = ["memsys", *sys.argv[2:]]
runpy.run_module("memsys", run_name="__main__")
"""

# The heavy clients: OpenAI's, Weaviate's with what only it brings (gRPC, pydantic), S3's.
OPENAI = {"openai"}
WEAVIATE = {"weaviate", "grpc", "pydantic"}
S3 = {"boto3", "botocore"}


def loaded_by_cli(args: list[str], env: dict[str, str], tmp_path: Path, code: int = 0) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", _CLI, str(out), *args], env=_env(env), cwd=str(REPO),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == code, done.stderr[-2000:]
    return set(json.loads(out.read_text()))


def loaded_by_script(code: str, env: dict[str, str]) -> tuple[str, set[str]]:
    """Runs `code` in a fresh interpreter; returns what it printed and the packages loaded."""
    done = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                           "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"],
                          env=_env(env), cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    *printed, modules = done.stdout.strip().splitlines()
    return "\n".join(printed), set(json.loads(modules))


def _env(env: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("MEMSYS_", "OPENAI_", "WEAVIATE_"))}, **env,
            "PYTHONPATH": str(REPO)}


def test_count_memories_in_a_fresh_interpreter_imports_no_openai_client(base_system: MemorySystem,
                                                                        test_env: dict[str, str]) -> None:
    """The guide's script path, with the memsys server running: it talks to Weaviate (so
    the Weaviate client is loaded) and embeds nothing (so the OpenAI client is not)."""
    printed, modules = loaded_by_script("import memsys\nprint(memsys.count_memories())", test_env)
    assert printed.isdigit()
    assert "weaviate" in modules  # the check below would pass for a count that never ran
    assert not (OPENAI | S3) & modules, sorted((OPENAI | S3) & modules)


@pytest.mark.parametrize("args", [["--help"], ["jobs", "--help"], ["logs", "--help"], ["server", "--help"],
                                  ["memories", "--help"], ["cache", "--help"], ["sources", "--help"]])
def test_help_imports_neither_client(args: list[str], test_env: dict[str, str], tmp_path: Path) -> None:
    modules = loaded_by_cli(args, test_env, tmp_path)
    assert "memsys" in modules and "argparse" in modules
    assert not (OPENAI | WEAVIATE) & modules, sorted((OPENAI | WEAVIATE) & modules)


@pytest.mark.parametrize("args, code", [(["jobs"], 0), (["logs", "--limit", "5"], 0), (["server", "status"], 3)])
def test_commands_that_talk_to_no_weaviate_import_no_client(args: list[str], code: int, tmp_path: Path) -> None:
    """`memsys jobs`, `logs` and `server status` on a data directory of their own (no
    server running, so nothing is started: `server status` says so with its exit code 3)
    build the whole engine, and import neither the OpenAI, the Weaviate nor the S3 client."""
    env = {"MEMSYS_DATA_DIR": str(tmp_path / "data"), "MEMSYS_EMBEDDING_PROVIDER": "local",
           "MEMSYS_SERVER_COMPANION": "off"}
    modules = loaded_by_cli(args, env, tmp_path, code)
    assert "memsys" in modules and "sqlite3" in modules  # the command read the job database
    assert not (OPENAI | WEAVIATE | S3) & modules, sorted((OPENAI | WEAVIATE | S3) & modules)


def test_weaviate_errors_are_caught_once_the_client_is_imported(test_env: dict[str, str]) -> None:
    """An `except weaviate_errors(...)` clause catches the others alone while the Weaviate
    client is not imported (none of its errors can exist yet) and its errors once it is."""
    printed, modules = loaded_by_script(
        "import sys\n"
        "from memsys.errors import weaviate_errors\n"
        "print('weaviate' in sys.modules, [c.__name__ for c in weaviate_errors(OSError)])\n"
        "from weaviate.exceptions import WeaviateQueryError\n"
        "try:\n"
        "    raise WeaviateQueryError('no such property', 'gRPC')\n"
        "except weaviate_errors(OSError) as caught:\n"
        "    print(type(caught).__name__, [c.__name__ for c in weaviate_errors()])\n",
        test_env)
    assert printed.splitlines() == ["False ['OSError']", "WeaviateQueryError ['WeaviateBaseError']"]
    assert "weaviate" in modules


def test_provider_errors_are_openai_errors_once_made(test_env: dict[str, str]) -> None:
    """memsys's provider errors are `openai.OpenAIError`s (the guide's scripts catch those)
    although importing memsys.errors does not load the OpenAI client."""
    printed, modules = loaded_by_script(
        "import pickle, sys\n"
        "from memsys.errors import EmbeddingProviderError, EmbeddingRateLimitError\n"
        "print('openai' in sys.modules)\n"
        "error = EmbeddingRateLimitError('slow down', status_code=429, retry_after=2.0)\n"
        "import openai\n"
        "print(isinstance(error, openai.OpenAIError), issubclass(EmbeddingProviderError, openai.OpenAIError))\n"
        "try:\n"
        "    raise EmbeddingRateLimitError('again')\n"
        "except openai.OpenAIError as caught:\n"
        "    print(type(caught).__name__, caught.retryable)\n"
        "print(type(pickle.loads(pickle.dumps(error))).__name__)\n",
        test_env)
    assert printed.splitlines() == ["False", "True True", "EmbeddingRateLimitError True", "EmbeddingRateLimitError"]
    assert "openai" in modules


def test_lazy_names_load_on_first_use(test_env: dict[str, str]) -> None:
    """A LazyName stands for its module's attribute when called, read or checked against,
    and imports the module only then; `lazy_module` stands for the module itself."""
    printed, _ = loaded_by_script(
        "import sys\n"
        "from memsys.lazy import LazyName, lazy_module\n"
        "Fraction = LazyName('fractions', 'Fraction')\n"
        "statistics = lazy_module('statistics')\n"
        "print('fractions' in sys.modules, 'statistics' in sys.modules)\n"
        "half = Fraction(1, 2)\n"
        "print('fractions' in sys.modules, half, isinstance(half, Fraction), Fraction.from_float(0.25))\n"
        "print(statistics.median([3, 1, 2]), 'statistics' in sys.modules)\n",
        test_env)
    assert printed.splitlines() == ["False False", "True 1/2 True 1/4", "2 True"]
