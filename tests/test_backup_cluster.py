"""Backups of a real three-node Weaviate cluster on loopback (tools/weaviate_cluster.py) into a
real S3 server on loopback (versitygw, tools/source_servers.py), with Weaviate's backup-s3
module on every node and MEMSYS_BACKUP_BACKEND=s3: the memsys process making a backup killed
with SIGKILL leaves a set that reads as failed and is never restored; a complete one holds the
job database, the audit trail and the settings in the bucket beside Weaviate's part; after the
cluster's collections and the data directory are wiped, a restore gives back the same
memories (uuids, fields, vectors), jobs and audit records; `backup delete` refuses an unknown
backup and one in use; the S3 secret is nowhere memsys writes.

The point is the backup, so the embedding cache is pre-warmed for the texts (as in
tests/test_cluster.py)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import REPO, run_memsys
from dashboard_support import wait_until
from helpers import write_rows_csv
from memsys.config import Settings
from memsys.engine import Engine
from memsys.engine.backups import COMPLETE, FAILED, BackupError, _place
from memsys.ingest.memories import MemoryDefaults
from memsys.store import backup as weaviate_backup
from memsys.store.client import connect
from test_pipeline import SMALL_BATCHES

sys.path.insert(0, str(REPO))
from bench.cluster import prewarm, texts_for  # noqa: E402
from tools.source_servers import S3_ACCESS_KEY, SENTINEL, VersityGW  # noqa: E402
from tools.weaviate_cluster import LocalCluster  # noqa: E402

BUCKET = "memsys-backups"
SLOW = 240
# The memsys process making the backup kills itself with SIGKILL once Weaviate has taken the
# request: a process that dies mid-backup, at a moment the test chooses.
KILLED_MID_BACKUP = """
import os, signal
from memsys.config import Settings
from memsys.engine.backups import create_set

def phase(name):
    if name == "weaviate started":
        os.kill(os.getpid(), signal.SIGKILL)

create_set(Settings.load(), "cut", on_phase=phase)
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VersityGW]:
    server = VersityGW(tmp_path_factory.mktemp("s3") / "root")
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3: VersityGW) -> Iterator[LocalCluster]:
    local = LocalCluster.plan_free_ports(tmp_path_factory.mktemp("backup-cluster"), 3)
    local.extra_env = {"ENABLE_MODULES": "backup-s3", "BACKUP_S3_BUCKET": BUCKET,
                       "BACKUP_S3_ENDPOINT": f"127.0.0.1:{s3.port}", "BACKUP_S3_USE_SSL": "false",
                       "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SENTINEL, "AWS_REGION": "us-east-1"}
    local.start()
    try:
        local.wait_ready(SLOW)
        yield local
    finally:
        local.stop(timeout=60)


def env_for(cluster: LocalCluster, s3: VersityGW, data_dir: Path, collection: str) -> dict[str, str]:
    return {**cluster.memsys_env(), "MEMSYS_DATA_DIR": str(data_dir), "MEMSYS_COLLECTION": collection,
            "MEMSYS_WEAVIATE_TIMEOUT": "20", "MEMSYS_BACKUP_BACKEND": "s3", "MEMSYS_BACKUP_S3_BUCKET": BUCKET,
            "MEMSYS_BACKUP_S3_PATH": "memsys", "MEMSYS_BACKUP_S3_ENDPOINT": s3.endpoint,
            "MEMSYS_BACKUP_S3_ACCESS_KEY": S3_ACCESS_KEY, "MEMSYS_BACKUP_S3_SECRET_KEY": SENTINEL}


def memories_in(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every object of every collection of the cluster: uuid -> (collection, fields, vectors)."""
    client = connect(settings)
    try:
        found = {}
        for name in client.collections.list_all(simple=True):
            for o in client.collections.get(name).iterator(include_vector=True):
                found[str(o.uuid)] = {"collection": name, "fields": dict(o.properties), "vector": dict(o.vector)}
        return found
    finally:
        client.close()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(str(db))
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.fixture(scope="module")
def backed_up(cluster: LocalCluster, s3: VersityGW, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An import on the cluster, a backup cut short by its killed process, a complete one made
    with the CLI, and what the cluster and the job database held at that moment."""
    root = tmp_path_factory.mktemp("cluster-backups")
    env = env_for(cluster, s3, root / "data", f"Backup_{uuid.uuid4().hex[:10]}")
    settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
    engine = Engine(settings, program="cli")
    try:
        texts = texts_for(40, "backed up")
        prewarm(engine, texts)
        csv = write_rows_csv(root / "rows.csv", texts)
        job = engine.jobs.wait(engine.imports.start(engine.imports.spool_paths([csv]), MemoryDefaults("ops", "r", "a"),
                                                    config=SMALL_BATCHES), timeout=SLOW)
        assert (job.state, job.written) == ("completed", len(texts))
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_BACKUP], env={**os.environ, **env,
                                "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=SLOW)
        assert killed.returncode == -9, killed.stderr
        # Weaviate goes on with the backup it was asked for; it takes one at a time.
        cut_part = _place(settings).weaviate_where("cut", root)
        wait_until(lambda: weaviate_backup.backup_status(settings, "cut", cut_part).get("status") in ("SUCCESS", "FAILED"),
                   SLOW, what="Weaviate ending the backup of the killed process")
        made = run_memsys(["backup", "create", "good"], env, timeout=SLOW)
        assert made.returncode == 0, made.stderr
        yield {"root": root, "env": env, "settings": settings, "engine": engine, "made": made,
               "live": memories_in(settings), "jobs": rows(settings.jobs_db, "SELECT * FROM jobs ORDER BY id"),
               "audit": rows(settings.jobs_db, "SELECT * FROM audit ORDER BY id")}
    finally:
        engine.close()


def test_a_backup_whose_process_was_killed_is_failed_and_never_restored(backed_up: dict[str, Any]) -> None:
    engine: Engine = backed_up["engine"]
    states = {s.name: s for s in engine.backups.list()}
    assert states["cut"].state == FAILED
    assert "the process making it stopped" in states["cut"].error
    assert states["good"].state == COMPLETE
    assert states["good"].where.startswith(f"s3://{BUCKET}/memsys/good")
    with pytest.raises(BackupError, match="backup cut is failed .*: it is never restored"):
        engine.backups.restore("cut")


def test_the_set_in_the_bucket_holds_every_part(backed_up: dict[str, Any], s3: VersityGW) -> None:
    assert "Backup good made" in backed_up["made"].stdout and "40 memories" in backed_up["made"].stdout
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="memsys/good/")["Contents"]]
    assert {"memsys/good/manifest.json", "memsys/good/jobs.sqlite3"} <= set(keys)
    assert any(k.startswith("memsys/good/weaviate/good/") for k in keys)  # Weaviate's own part, by backup-s3
    made = backed_up["engine"].backups.get("good")
    assert (made.memories, made.jobs) == (40, 1)
    assert set(made.parts) == {"weaviate", "jobs", "files", "spool"} and made.parts["weaviate"]["files"] > 0


def test_the_check_of_a_cluster_backup_reads_the_bucket_and_weaviate(backed_up: dict[str, Any]) -> None:
    report = run_memsys(["backup", "verify", "good"], backed_up["env"], timeout=SLOW)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "Backup good is whole: its checksums match, its job database holds 1 imports" in report.stdout
    assert "Weaviate says its backup of 40 memories in 1 collection(s) succeeded" in report.stdout


def test_delete_refuses_an_unknown_backup_and_one_in_use(backed_up: dict[str, Any]) -> None:
    engine: Engine = backed_up["engine"]
    with pytest.raises(BackupError, match="there is no backup 'nope' in s3://memsys-backups/memsys .there are: good, cut"):
        engine.backups.delete("nope")
    found = engine.backups.get("cut")
    release = _place(backed_up["settings"]).mark(found, "restore")  # as a restore running in this process does
    try:
        with pytest.raises(BackupError, match="backup cut is in use .a restore by process"):
            engine.backups.delete("cut")
    finally:
        release()
    refused = run_memsys(["backup", "delete", "cut"], backed_up["env"])
    assert refused.returncode == 2 and "would delete backup cut (failed)" in refused.stdout
    deleted = run_memsys(["backup", "delete", "cut", "--yes"], backed_up["env"])
    assert deleted.returncode == 0, deleted.stderr
    assert [s.name for s in engine.backups.list()] == ["good"]


def test_restore_on_the_wiped_cluster_gives_everything_back_and_the_secret_is_nowhere(
        backed_up: dict[str, Any], s3: VersityGW) -> None:
    settings: Settings = backed_up["settings"]
    engine: Engine = backed_up["engine"]
    engine.system.store.delete_all()
    assert memories_in(settings) == {}
    engine.close()
    shutil.rmtree(settings.data_dir)
    restored = run_memsys(["backup", "restore", "good", "--yes"], backed_up["env"], timeout=SLOW)
    assert restored.returncode == 0, restored.stderr
    assert "Restored backup good" in restored.stdout and "40 memories, 1 imports" in restored.stdout
    assert memories_in(settings) == backed_up["live"]
    assert rows(settings.jobs_db, "SELECT * FROM jobs ORDER BY id") == backed_up["jobs"]
    audit = rows(settings.jobs_db, "SELECT * FROM audit ORDER BY id")
    # All but the set's own record, written after its copy of the trail was taken.
    assert audit[:-1] == backed_up["audit"][:-1]
    assert audit[-1][3] == "backup.restored"
    # The S3 secret reached neither the data directory (logs, job database) nor the bucket
    # (manifests, the job database's copy) nor any output.
    secret = SENTINEL.encode()
    assert files_holding(settings.data_dir, secret) == []
    assert files_holding(s3.folder, secret) == []
    for result in (backed_up["made"], restored):
        assert SENTINEL not in result.stdout + result.stderr
