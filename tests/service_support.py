"""Helpers for the service tests: `memsys api` / `memsys mcp --transport http` run as real
processes on 127.0.0.1 (each in its own process group, stopped as a group), and API tokens
made with the real CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from memsys import Settings
from memsys.engine import Engine
from memsys.store import server as memsys_server

from conftest import REPO, free_port, run_memsys, wait_for_http

# Never a real key: a configured provider key the service must never show or log.
SENTINEL = "sk-SENTINEL-service-0b5e7a"


def service_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "MEMSYS_DATA_DIR": str(data_dir),
        "MEMSYS_WEAVIATE_PORT": str(free_port()),
        "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        "MEMSYS_EMBEDDING_PROVIDER": "local",
        "MEMSYS_SERVER_IDLE_SECONDS": "60",
        "OPENAI_API_KEY": SENTINEL,
        **extra,
    }


def make_token(env: dict[str, str], name: str, role: str, *options: str) -> str:
    """An API token made by the CLI (`memsys tokens create`); the token is its stdout."""
    done = run_memsys(["tokens", "create", name, "--role", role, *options], env, timeout=120)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("msk_")
    return token


def make_tokens(env: dict[str, str], wanted: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Several API tokens made through the engine in this process (the CLI's own call,
    without starting an interpreter per token): {name: (role, projects, rate per minute)} -> {name: token}."""
    engine = Engine(Settings.load(env=env, secrets_path=Path("/nonexistent")))
    try:
        return {name: engine.tokens.create(f"{name} agent", role, projects, rate)[1]
                for name, (role, projects, rate) in wanted.items()}
    finally:
        engine.close()


class ServiceProcess:
    """`python -m memsys <args>` serving HTTP on a free loopback port, logging to `log`."""

    def __init__(self, env: dict[str, str], log: Path, args: list[str], health: str = "/healthz") -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("w")
        full_env = {**os.environ, **env, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(REPO)}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            full_env.pop(proxy, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memsys", *args, "--port", str(self.port)], cwd=str(REPO), env=full_env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for_http(self.url + health, timeout=120)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        memsys_server.stop_server(Settings.load(env=self.env, secrets_path=Path("/nonexistent")))
        self._log.close()
