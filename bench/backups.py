"""Backup and restore of a store of 10,000 and 100,000 memories (issue 26's figures, R16):
`python -m bench backups` (10,000) or `python -m bench backups:100000`, or
`python -m bench.backups 10000 100000`.

The store is built fast and real: a small real import (the local embedder, a few notes)
gives real memories with real vectors; N memories are then written by Weaviate's own
client batch (`collection.batch.fixed_size`), each a copy of a real one with its own
uuid, text, document and a jittered, re-normalised vector. Then `engine.backups.create`
(Weaviate's backup-filesystem, the job database, the settings files, the spool), timed,
with the set's size on disk; the data directory is wiped; `engine.backups.restore` into
it, timed; and every memory is read back from both stores and compared (uuid, fields,
vector): restored == live, goal identical.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Result
from memsys.config import Settings
from memsys.engine import Engine, MemoryDefaults
from memsys.store import server as memsys_server
from memsys.units import size

NOTES = [
    "Deploys happen on Tuesdays after the change advisory board has approved the release notes.",
    "Rollbacks need two approvals from the on-call engineers and a ticket in the incident tracker.",
    "The staging cluster is rebuilt every night from the main branch so tests run on fresh data.",
    "Backups of the database are taken every six hours and kept for thirty days in another region.",
    "New engineers pair with a mentor for their first two weeks and shadow one on-call rotation.",
    "Customer data never leaves the European region; support tools mask e-mail addresses by default.",
]
WORDS = ("backup restore retention cache spool memory document import source disk space weaviate operator "
         "archive monthly drill verify prune settled job audit trail summary metrics").split()
BATCH = 500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(root: Path, data: str) -> Settings:
    env = {"MEMSYS_DATA_DIR": str(root / data), "MEMSYS_BACKUP_DIR": str(root / "backups"),
           "MEMSYS_SERVER_IDLE_SECONDS": "120", "MEMSYS_WEAVIATE_PORT": str(_free_port()),
           "MEMSYS_WEAVIATE_GRPC_PORT": str(_free_port()), "MEMSYS_SERVER_COMPANION": "off"}
    return Settings.load(env=env, secrets_path=Path("/nonexistent"))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def every_memory(settings: Settings) -> dict[str, str]:
    """uuid -> a sha256 of the fields and vectors (as JSON text) of every memory of every
    collection (a digest, so 100,000 memories fit in memory twice)."""
    client, _ = memsys_server.connect_client(settings)
    try:
        out = {}
        for name in client.collections.list_all(simple=True):
            for o in client.collections.get(name).iterator(include_vector=True):
                text = json.dumps([name, o.properties, o.vector], sort_keys=True, default=str)
                out[str(o.uuid)] = hashlib.sha256(text.encode()).hexdigest()
        return out
    finally:
        client.close()
        memsys_server.release_client(settings)


def build_store(engine: Engine, root: Path, memories: int) -> float:
    """A real import of NOTES, then `memories` more by the client's batch, jittered copies of
    the real ones; returns the seconds the batch took."""
    docs = root / "docs"
    docs.mkdir()
    for i, text in enumerate(NOTES):
        (docs / f"note{i}.txt").write_text(text, encoding="utf-8")
    job = engine.jobs.wait(engine.imports.start(engine.imports.spool_paths([docs]), MemoryDefaults("bench", "backup", "a")),
                           timeout=900)
    if job.state != "completed":
        raise SystemExit(f"the small real import ended {job.state}")
    settings = engine.settings
    client, _ = memsys_server.connect_client(settings)
    try:
        collection = client.collections.get(settings.collection)
        real = list(collection.iterator(include_vector=True))
        rng = random.Random(26)
        noise = np.random.default_rng(26)
        began = time.monotonic()
        with collection.batch.fixed_size(batch_size=BATCH, concurrent_requests=2) as batch:
            for i in range(memories):
                model = real[i % len(real)]
                fields = dict(model.properties)
                fields["content"] = f"memory {i}: " + " ".join(rng.choice(WORDS) for _ in range(30)) + "."
                fields["source_file"] = f"doc{i // 20}.md"
                if "chunk_index" in fields:
                    fields["chunk_index"] = i % 20
                vectors = {}
                for name, vector in model.vector.items():
                    v = np.asarray(vector, dtype=np.float32) + noise.normal(0, 0.02, len(vector)).astype(np.float32)
                    vectors[name] = (v / np.linalg.norm(v)).tolist()
                batch.add_object(properties=fields, vector=vectors if len(vectors) > 1 or "default" not in vectors
                                 else vectors["default"], uuid=uuidlib.UUID(int=rng.getrandbits(128), version=4))
        failed = collection.batch.failed_objects
        if failed:
            raise SystemExit(f"{len(failed)} memories were not written: {failed[0].message}")
        return time.monotonic() - began
    finally:
        client.close()
        memsys_server.release_client(settings)


def measure(memories: int) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="memsys-bench-backups-"))
    settings = _settings(root, "data")
    try:
        engine = Engine(settings, program="cli")
        try:
            built = build_store(engine, root, memories)
            began = time.monotonic()
            made = engine.backups.create("bench")
            made_in = time.monotonic() - began
        finally:
            engine.close()
        live = every_memory(settings)
        memsys_server.stop_server(settings)
        data_bytes = _folder_bytes(settings.data_dir) - _folder_bytes(settings.backups_dir) \
            if settings.backups_dir.is_relative_to(settings.data_dir) else _folder_bytes(settings.data_dir)
        shutil.rmtree(settings.data_dir)
        engine = Engine(settings, program="cli")
        try:
            began = time.monotonic()
            restored_counts = engine.backups.restore("bench")
            restored_in = time.monotonic() - began
        finally:
            engine.close()
        restored = every_memory(settings)
        same = sum(1 for k, v in live.items() if restored.get(k) == v)
        identical = same == len(live) == len(restored)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        detail = (f"load {load}; {len(live):,} memories (built by batch in {built:.0f} s); backup {size(made.size_bytes)} "
                  f"(data directory {size(data_bytes)}), create {made_in:.1f} s, restore into the wiped data "
                  f"directory {restored_in:.1f} s (with its server start); restored == live for {same:,} of "
                  f"{len(live):,}{' (identical)' if identical else ''}; restored counts {sum(restored_counts.values()):,}")
        return [
            Result("R16", f"backup of {memories:,} memories: create", made_in, "s", "(figure)", True, detail),
            Result("R16", f"backup of {memories:,} memories: restore", restored_in, "s", "(figure)", True),
            Result("R16", f"backup of {memories:,} memories: size", made.size_bytes / 2**20, "MiB", "(figure)", True),
            Result("R16", f"backup of {memories:,} memories: restored == live", same / max(1, len(live)) * 100, "%",
                   "identical", identical),
        ]
    finally:
        memsys_server.stop_server(settings)
        shutil.rmtree(root, ignore_errors=True)


def run(step: str | None = None) -> list[Result]:
    """10,000 memories; the step names another count (`backups:100000`)."""
    return measure(int(step) if step else 10_000)


if __name__ == "__main__":
    for count in (sys.argv[1:] or ["10000"]):
        for result in measure(int(count)):
            print(result.line(), flush=True)
