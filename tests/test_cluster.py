"""memsys on a real three-node Weaviate cluster on loopback (tools/weaviate_cluster.py,
started once for the module): replication settings applied, a node killed with SIGKILL
during an import loses nothing, a node down for a whole import is caught up and verified,
reads keep answering, an import below its consistency level names the node,
and Home shows the dead node.

The point here is the store, so the embedding cache is pre-warmed with fixed unit vectors
for the texts (the documented path for an already-embedded corpus): the local embedder
would otherwise take minutes on a busy 2-core machine."""
from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import REPO, run_memsys
from dashboard_support import wait_until
from helpers import write_rows_csv
from memsys.config import Settings
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from test_pipeline import SMALL_BATCHES

sys.path.insert(0, str(REPO))
from bench.cluster import finish_job, prewarm, texts_for, wait_for_every_replica  # noqa: E402
from tools.weaviate_cluster import LocalCluster  # noqa: E402

NODES = ("node01", "node02", "node03")
# Every test may wait this long for a node to rejoin or replicas to converge.
SLOW = 240


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster.plan_free_ports(tmp_path_factory.mktemp("cluster"), 3)
    local.start()
    try:
        local.wait_ready(SLOW)
        yield local
    finally:
        local.stop(timeout=60)


@pytest.fixture(scope="module")
def cluster_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder (jobs and embedding cache) for the module; each test has its collection."""
    return tmp_path_factory.mktemp("cluster-data")


def cluster_settings(cluster: LocalCluster, data_dir: Path, **env: str) -> Settings:
    values = {
        **cluster.memsys_env(),
        "MEMSYS_DATA_DIR": str(data_dir),
        "MEMSYS_COLLECTION": f"Cluster_{uuid.uuid4().hex[:10]}",
        "MEMSYS_WEAVIATE_TIMEOUT": "20",
        **env,
    }
    return Settings.load(env=values, secrets_path=Path("/nonexistent"))


@pytest.fixture
def engine(cluster: LocalCluster, cluster_data: Path) -> Iterator[Engine]:
    cluster.start()  # a node an earlier test left down comes back first
    cluster.wait_ready(SLOW)
    eng = Engine(cluster_settings(cluster, cluster_data))
    yield eng
    eng.system.store.delete_all()
    eng.close()


def start_import(eng: Engine, tmp_path: Path, texts: Sequence[str], name: str = "rows.csv", **config: object) -> str:
    prewarm(eng, texts)
    csv = write_rows_csv(tmp_path / name, texts)
    batch = dataclasses.replace(SMALL_BATCHES, **config)
    return eng.imports.start(eng.imports.spool_paths([csv]), MemoryDefaults("cluster", "r", "a"), config=batch)


def victim(cluster: LocalCluster) -> str:
    """A node to kill: not node01 (memsys talks to it), and not the Raft leader."""
    assert set(cluster.members()) == set(NODES)
    return "node03" if cluster.leader() != "node03" else "node02"


def test_a_new_collection_is_replicated_to_every_node_with_async_replication(engine: Engine) -> None:
    engine.system.store.ensure_collection()
    # A new collection reaches every node's schema through Raft: the node memsys talks to
    # may list it a moment after the leader made it.
    wait_until(lambda: engine.server.cluster().replication_factor is not None, 60,
               what="the node memsys talks to listing the new collection")
    status = engine.server.cluster()
    assert [(n.name, n.status) for n in status.nodes] == [(name, "HEALTHY") for name in NODES]
    assert (status.replication_factor, status.shard_count, status.async_replication) == (3, 3, True)
    assert (status.write_consistency, status.read_consistency) == ("QUORUM", "QUORUM")
    assert all(n.shards == 3 for n in status.nodes)


def test_a_node_killed_and_restarted_mid_import_loses_nothing_and_every_replica_gets_every_memory(
    engine: Engine, cluster: LocalCluster, tmp_path: Path
) -> None:
    texts = texts_for(2000, "killed")
    job_id = start_import(engine, tmp_path, texts, max_retries=4, base_retry_delay=0.5, max_retry_delay=4.0)
    node = victim(cluster)
    wait_until(lambda: engine.job_store.require(job_id).processed >= 400, SLOW, what="400 items processed")
    cluster.signal_node(node, signal.SIGKILL)
    killed_at = engine.job_store.require(job_id).processed
    wait_until(lambda: engine.job_store.require(job_id).processed >= min(killed_at + 400, 1600)
               or not engine.job_store.require(job_id).is_active, SLOW, what="the import going on without the node")
    cluster.start([node])
    finish_job(engine, job_id)
    cluster.wait_ready(SLOW)

    job = engine.job_store.require(job_id)
    assert (job.total, job.written, job.unchanged, job.failed) == (2000, 2000, 0, 0)
    uuids = [u for u, _ in engine.job_store.stored_items(job_id)]
    assert len(uuids) == 2000
    wait_for_every_replica(engine, uuids, NODES, timeout=SLOW)
    assert len(engine.system.store.existing(uuids, level="ALL")) == 2000
    assert engine.system.store.count() == 2000  # nothing else, nothing twice
    assert engine.jobs.verify(job_id).ok


def test_a_node_down_for_a_whole_quorum_import_is_caught_up_and_verified(
    engine: Engine, cluster: LocalCluster, tmp_path: Path
) -> None:
    engine.system.store.ensure_collection()  # created with three replicas while all nodes are up
    cluster.signal_node("node03", signal.SIGKILL)
    job_id = start_import(engine, tmp_path, texts_for(600, "outage"))
    job = engine.runner.wait(job_id, timeout=SLOW)
    assert (job.state, job.written, job.failed) == ("completed", 600, 0)

    verify = run_memsys(["verify", "--job", job_id], cli_env(engine.settings))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "600 of 600 memories are not yet fully replicated; node03 is down" in verify.stdout
    assert "on 2 of 3 replicas; not on node03" in verify.stdout

    cluster.start(["node03"])
    cluster.wait_ready(SLOW)
    wait_until(lambda: engine.jobs.verify(job_id).ok, SLOW, what="verify reporting full replication")
    verify = run_memsys(["verify", "--job", job_id], cli_env(engine.settings))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"job {job_id}: all 600 memories are readable with consistency ALL on 3 replicas" in verify.stdout


def test_search_and_browse_keep_answering_while_a_node_restarts(
    engine: Engine, cluster: LocalCluster, tmp_path: Path
) -> None:
    job_id = start_import(engine, tmp_path, texts_for(300, "reads"))
    assert engine.runner.wait(job_id, timeout=SLOW).written == 300
    store = engine.system.store
    query = engine.system.router.embed(["reads 7: harbor alpha alpha"], kind="query").vectors[0]
    with Reading(lambda: (len(store.search(query, limit=5)), len(store.browse(limit=20)))) as reading:
        answers = reading.answers
        wait_until(lambda: len(answers) >= 3, 60, what="reads before the restart")
        cluster.signal_node("node02", signal.SIGKILL)
        during = len(answers)
        wait_until(lambda: len(answers) >= during + 5, SLOW, what="reads while node02 is down")
        cluster.start(["node02"])
        cluster.wait_ready(SLOW)
        after = len(answers)
        wait_until(lambda: len(answers) >= after + 3, 60, what="reads after node02 is back")
    assert not reading.errors, reading.errors[:3]
    assert all(hits == 5 and page == 20 for hits, page in answers)


class Reading:
    """Reads over and over in a thread while the block runs, keeping every answer and
    every failure."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read
        self.answers: list[Any] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(self.read())
            except Exception as e:  # noqa: BLE001 - every failed read is what the tests count
                self.errors.append(e)

    def __enter__(self) -> "Reading":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_given_every_node_memsys_moves_on_when_the_node_it_talks_to_dies(
    cluster: LocalCluster, cluster_data: Path, tmp_path: Path
) -> None:
    cluster.start()
    cluster.wait_ready(SLOW)
    eng = Engine(cluster_settings(cluster, cluster_data, WEAVIATE_URL="", **cluster.memsys_env(every_node=True)))
    try:
        store = eng.system.store
        assert store.rest_url == cluster.nodes[0].url
        first = start_import(eng, tmp_path, texts_for(300, "moves"))
        assert eng.runner.wait(first, timeout=SLOW).written == 300
        with Reading(lambda: (len(eng.memories.search("moves 7: harbor alpha", limit=5)), len(eng.memories.browse(limit=20)),
                              eng.memories.count(), store.rest_url)) as reading:
            answers = reading.answers
            wait_until(lambda: len(answers) >= 3, 60, what="reads before the kill")
            cluster.signal_node("node01", signal.SIGKILL)
            wait_until(lambda: sum(url != cluster.nodes[0].url for *_, url in answers) >= 5, SLOW,
                       what="reads answered by another node")
            # An import while the first node is down goes to the node memsys moved to.
            second = start_import(eng, tmp_path, texts_for(200, "moved"), name="more.csv")
            job = eng.runner.wait(second, timeout=SLOW)
            assert (job.state, job.written, job.failed) == ("completed", 200, 0), job.error
        assert not reading.errors, reading.errors[:3]
        assert all(hits == 5 and page == 20 and 300 <= count <= 500 for hits, page, count, _ in answers)
        assert store.rest_url in {n.url for n in cluster.nodes[1:]}
        status = eng.server.cluster()
        assert (status.talks_to, status.configured_nodes) == (store.rest_url, 3) and "node01" in status.down
        cluster.start(["node01"])
        cluster.wait_ready(SLOW)
        assert eng.memories.count() == 500
    finally:
        cluster.start()
        cluster.wait_ready(SLOW)
        eng.system.store.delete_all()
        eng.close()


def test_an_import_below_its_consistency_level_names_the_node_and_retry_failed_finishes_it(
    cluster: LocalCluster, cluster_data: Path, tmp_path: Path
) -> None:
    cluster.start()
    cluster.wait_ready(SLOW)
    eng = Engine(cluster_settings(cluster, cluster_data, MEMSYS_WRITE_CONSISTENCY="ALL"))
    try:
        eng.system.store.ensure_collection()
        texts = texts_for(200, "below")
        prewarm(eng, texts)
        csv = write_rows_csv(tmp_path / "rows.csv", texts)
        job_id = eng.imports.create(eng.imports.spool_paths([csv]), MemoryDefaults("cluster", "r", "a"),
                                   config=dataclasses.replace(SMALL_BATCHES, max_retries=0, embed_workers=1))
        cluster.signal_node("node03", signal.SIGKILL)
        job = eng.pipeline.run(job_id)  # refused below ALL, whether or not Weaviate still counts node03
        assert job.failed > 0 and job.written + job.failed == 200
        failed = eng.job_store.failed_items(job_id)
        # Refused below ALL (the reason names the node), or, on a loaded machine, caught in
        # flight by the kill until the write timeout (store_unavailable): both are retryable.
        assert {f.error_type for f in failed} <= {"replicas_down", "store_unavailable"}
        assert all("node03 is down" in f.reason and "consistency ALL" in f.reason
                   for f in failed if f.error_type == "replicas_down")

        cluster.start(["node03"])
        cluster.wait_ready(SLOW)
        eng.runner.retry_failed(job_id)
        job = eng.runner.wait(job_id, timeout=SLOW)
        assert (job.state, job.written, job.failed) == ("completed", 200, 0)
        assert eng.system.store.count() == 200
    finally:
        eng.system.store.delete_all()
        eng.close()


def test_home_shows_the_three_nodes_and_marks_the_dead_one(cluster: LocalCluster, cluster_data: Path) -> None:
    cluster.start()
    cluster.wait_ready(SLOW)
    settings = cluster_settings(cluster, cluster_data)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in cli_env(settings).items():
            mp.setenv(name, value)
        mp.chdir(cluster_data)  # no .streamlit/secrets.toml here
        # As `make run` serves it (.streamlit/config.toml, not read from this folder): loopback only.
        st.config.set_option("server.address", "127.0.0.1")
        try:
            at = home()
            assert node_rows(at) == {"node01": "up", "node02": "up", "node03": "up"}
            assert f"memsys talks to {cluster.nodes[0].url}; list every node in WEAVIATE_URLS" in texts_of(at, "caption")
            cluster.signal_node("node03", signal.SIGKILL)
            wait_until(lambda: node_rows(home())["node03"].startswith("DOWN"), 60, what="Home marking node03 as down")
            at = home()
            assert node_rows(at) == {"node01": "up", "node02": "up", "node03": "DOWN"}
            assert any("node03 is down" in str(w.value) for w in at.warning)
        finally:
            st.cache_resource.clear()


def cli_env(settings: Settings) -> dict[str, str]:
    return {"WEAVIATE_URL": settings.weaviate_url or "", "MEMSYS_WEAVIATE_GRPC_PORT": str(settings.weaviate_grpc_port),
            "WEAVIATE_API_KEY": settings.weaviate_api_key.get(), "MEMSYS_DATA_DIR": str(settings.data_dir),
            "MEMSYS_COLLECTION": settings.collection, "MEMSYS_EMBEDDING_PROVIDER": "local"}


def home() -> AppTest:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts_of(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in at.get(kind))


def node_rows(at: AppTest) -> dict[str, str]:
    for frame in at.dataframe:
        table = frame.value
        if "Node" in table.columns and "Status" in table.columns:
            return {name.removesuffix(" (Raft leader)"): status for name, status in zip(table["Node"], table["Status"])}
    raise AssertionError(f"Home shows no table of nodes; errors: {[str(e.value) for e in at.error]}")


def test_the_cluster_tool_reports_each_node_and_the_settings_for_memsys(cluster: LocalCluster) -> None:
    cluster.start()
    cluster.wait_ready(SLOW)
    status = subprocess.run([sys.executable, "tools/weaviate_cluster.py", "status", "--base-dir", str(cluster.base_dir)],
                            cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    for node in cluster.nodes:
        assert f"{node.name}  pid {node.pid}" in status.stdout and f"rest {node.rest} grpc {node.grpc}" in status.stdout
    assert f"WEAVIATE_URL=http://127.0.0.1:{cluster.nodes[0].rest}" in status.stdout
    assert f"MEMSYS_WEAVIATE_GRPC_PORT={cluster.nodes[0].grpc}" in status.stdout
    assert "WEAVIATE_URLS=" + ",".join(f"http://127.0.0.1:{n.rest}?grpc={n.grpc}" for n in cluster.nodes) in status.stdout
    assert cluster.api_key not in status.stdout  # the key stays in its owner-only file
    assert oct((cluster.base_dir / "api-key").stat().st_mode & 0o777) == "0o600"


def test_the_cluster_tool_says_when_there_is_no_cluster(tmp_path: Path) -> None:
    status = subprocess.run([sys.executable, "tools/weaviate_cluster.py", "stop", "--base-dir", str(tmp_path)],
                            cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert status.returncode == 2
    assert f"no cluster in {tmp_path} (no cluster.json); start one first" in status.stderr
