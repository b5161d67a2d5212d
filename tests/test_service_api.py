"""`memsys api` as a real process on 127.0.0.1, driven by real HTTP clients: its OpenAPI
description, every endpoint with every role (refusals included), API tokens and their
limits, the guide's validation with per-memory results, uploads and imports followed over
HTTP, Dify's retrieval contract, concurrent single writes batched together, a killed
writer losing nothing acknowledged, a foreign Host refused, and the configured secret
never in a response or a log line."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from openapi_spec_validator import validate

from conftest import run_memsys
from memsys import Settings
from memsys.engine import Engine, MemoryDefaults
from dashboard_support import jsonl, sentences, wait_until
from service_support import SENTINEL, ServiceProcess, make_token, make_tokens, service_env

PROJECT = "svc"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One API server for the module, with a token per role, one limited to a knowledge
    base and one with a tiny rate limit (made before it starts, so every call needs one)."""
    data_dir = tmp_path_factory.mktemp("service-api")
    env = service_env(data_dir, MEMSYS_API_MAX_BODY_BYTES="65536", MEMSYS_API_MAX_UPLOAD_BYTES="300000",
                      MEMSYS_API_BATCH_WINDOW_MS="30")
    tokens = make_tokens(env, {"viewer": ("viewer", (), 0), "operator": ("operator", (), 0), "admin": ("admin", (), 0),
                               "limited": ("operator", ("only-this",), 0), "slow": ("viewer", (), 2)})
    server = ServiceProcess(env, data_dir / "api.log", ["api"])
    responses: list[str] = []
    try:
        yield {"server": server, "env": env, "tokens": tokens, "url": server.url, "responses": responses,
               "data_dir": data_dir}
    finally:
        server.stop()


def client(api: dict[str, Any], who: str | None = "admin", **headers: str) -> httpx.Client:
    """An HTTP client as `who` (a token's name; None: no token) that keeps every answer's body."""
    if who is not None:
        headers["Authorization"] = f"Bearer {api['tokens'][who]}"

    def keep(response: httpx.Response) -> None:
        response.read()
        api["responses"].append(response.text)

    return httpx.Client(base_url=api["url"], headers=headers, timeout=120, event_hooks={"response": [keep]})


def memory(i: int, project: str = PROJECT, **fields: Any) -> dict[str, Any]:
    return {"content": f"Service note {i}: the nightly build on runner {i % 7} took {i + 3} minutes.",
            "project": project, "repo": "ci", "agent": f"agent-{i % 5}", **fields}


def test_openapi_document_validates_and_docs_page_is_served(api: dict[str, Any]) -> None:
    with client(api, None) as c:
        spec = c.get("/openapi.json").json()
        docs = c.get("/docs")
        script = c.get("/docs-assets/swagger-ui-bundle.js")
    validate(spec)
    for path in ("/v1/memories", "/v1/memories/batch", "/v1/search", "/v1/imports/{job_id}/events", "/retrieval",
                 "/v1/uploads/{upload_id}/files/{name}", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    assert script.status_code == 200 and len(script.content) > 100_000


def test_health_and_readiness_answer_without_a_token(api: dict[str, Any]) -> None:
    with client(api, None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}


def test_a_foreign_host_is_refused(api: dict[str, Any]) -> None:
    with client(api, "admin", Host="memsys.attacker.example") as c:
        refused = c.get("/v1/knowledge-bases")
    with client(api, "admin", Origin="http://attacker.example") as c:
        cross_site = c.post("/v1/search", json={"query": "build"})
    assert refused.status_code == 403 and "memsys.attacker.example" in refused.text
    assert cross_site.status_code == 403


def test_calls_without_a_valid_token_are_refused(api: dict[str, Any]) -> None:
    with client(api, None) as c:
        missing = c.post("/v1/search", json={"query": "build"})
        wrong = c.post("/v1/search", json={"query": "build"}, headers={"Authorization": "Bearer msk_not-a-token"})
        malformed = c.post("/v1/search", json={"query": "build"}, headers={"Authorization": "Basic abc"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "memsys tokens create" in missing.json()["detail"]
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    assert malformed.status_code == 401


# (method, path, body, least role). Bodies are small; a refused call never runs.
ENDPOINTS = [
    ("POST", "/v1/memories", memory(900), "operator"),
    ("POST", "/v1/memories/batch", {"memories": [memory(901), memory(902)]}, "operator"),
    ("POST", "/v1/search", {"query": "nightly build", "limit": 3}, "viewer"),
    ("GET", "/v1/memories?limit=5", None, "viewer"),
    ("GET", "/v1/knowledge-bases", None, "viewer"),
    ("GET", f"/v1/documents?project={PROJECT}", None, "viewer"),
    ("POST", "/v1/memories/delete", {"filter": {"project": PROJECT, "agent": "nobody"}, "dry_run": True}, "admin"),
    ("POST", "/v1/uploads", None, "operator"),
    ("GET", "/v1/imports", None, "viewer"),
    ("GET", "/v1/cache", None, "viewer"),
    ("POST", "/v1/cache/check", {"fix": False}, "operator"),
    ("POST", "/v1/cache/check", {"fix": True}, "admin"),
    ("GET", "/v1/writes/stats", None, "viewer"),
]
ROLES = ("viewer", "operator", "admin")


@pytest.mark.parametrize("method,path,body,least", ENDPOINTS, ids=[f"{m} {p} {r}" for m, p, _, r in ENDPOINTS])
def test_every_endpoint_is_allowed_or_refused_as_each_role_says(api: dict[str, Any], method: str, path: str,
                                                                 body: Any, least: str) -> None:
    for role in ROLES:
        with client(api, role) as c:
            answer = c.request(method, path, json=body)
        if ROLES.index(role) >= ROLES.index(least):
            assert answer.status_code < 300, (role, answer.text)
        else:
            assert answer.status_code == 403, (role, answer.text)
            assert f"needs the {least} role" in answer.json()["detail"]


def test_a_memory_is_written_read_back_and_found(api: dict[str, Any]) -> None:
    with client(api, "operator") as c:
        written = c.post("/v1/memories", json=memory(1, tags=["build"]))
        again = c.post("/v1/memories", json=memory(1, tags=["build"]))
        uuid = written.json()["uuid"]
        got = c.get(f"/v1/memories/{uuid}")
        hits = c.post("/v1/search", json={"query": "nightly build runner", "mode": "keyword",
                                          "filter": {"project": PROJECT, "tags": ["build"]}})
    assert written.status_code == 201 and written.json()["status"] == "written"
    assert again.json() == {**written.json(), "status": "unchanged"}
    assert got.json()["content"] == memory(1)["content"] and got.json()["tags"] == ["build"]
    assert uuid in [h["uuid"] for h in hits.json()["hits"]]


def test_bad_memories_are_named_and_the_rest_of_the_batch_goes_in(api: dict[str, Any]) -> None:
    batch = [memory(10), {"content": "no repo", "project": PROJECT, "agent": "a"}, memory(11),
             {**memory(12), "content": "   "}, {**memory(13), "colour": "red"}]
    with client(api, "operator") as c:
        answer = c.post("/v1/memories/batch", json={"memories": batch}).json()
        single = c.post("/v1/memories", json={**memory(14), "tags": "not-a-list"})
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["written", "failed", "written", "failed", "failed"]
    assert answer["results"][1]["error"] == "memory #1: field 'repo' is missing"
    assert "field 'content' must not be empty" in answer["results"][3]["error"]
    assert "'colour' is not a memory field" in answer["results"][4]["error"]
    assert answer["written"] == 2 and answer["failed"] == 3
    assert single.status_code == 422 and "tags" in single.json()["detail"]


def test_browse_pages_and_delete_by_filter_with_a_dry_run(api: dict[str, Any]) -> None:
    gone = "svc-delete"
    with client(api, "admin") as c:
        c.post("/v1/memories/batch", json={"memories": [memory(i, project=gone) for i in range(30, 35)]})
        first = c.get(f"/v1/memories?project={gone}&limit=3").json()
        second = c.get(f"/v1/memories?project={gone}&limit=3&after={first['next_after']}").json()
        dry = c.post("/v1/memories/delete", json={"filter": {"project": gone}, "dry_run": True}).json()
        still = c.get(f"/v1/memories?project={gone}&limit=10").json()
        empty = c.post("/v1/memories/delete", json={"filter": {}, "dry_run": False})
        deleted = c.post("/v1/memories/delete", json={"filter": {"project": gone}, "dry_run": False}).json()
        after = c.get(f"/v1/memories?project={gone}").json()
    assert len(first["memories"]) == 3 and len(second["memories"]) == 2 and second["next_after"] is None
    assert dry == {"count": 5, "dry_run": True} and len(still["memories"]) == 5
    assert empty.status_code == 400 and "empty filter" in empty.json()["detail"]
    assert deleted == {"count": 5, "dry_run": False} and after["memories"] == []


def test_a_token_limited_to_a_knowledge_base_reaches_only_it(api: dict[str, Any]) -> None:
    with client(api, "limited") as c:
        own = c.post("/v1/memories", json=memory(40, project="only-this"))
        other = c.post("/v1/memories", json=memory(41, project=PROJECT))
        search = c.post("/v1/search", json={"query": "nightly build", "mode": "keyword"}).json()
        refused = c.post("/v1/search", json={"query": "nightly build", "filter": {"project": PROJECT}})
        bases = c.get("/v1/knowledge-bases").json()
    with client(api, "admin") as c:
        someone_elses = c.get("/v1/memories?limit=1&project=" + PROJECT).json()["memories"][0]["uuid"]
    with client(api, "limited") as c:
        hidden = c.get(f"/v1/memories/{someone_elses}")
    assert own.status_code == 201
    assert other.status_code == 403 and "not one this caller may write to" in other.json()["detail"]
    assert search["hits"] and {h["project"] for h in search["hits"]} == {"only-this"}
    assert refused.status_code == 403
    assert [b["project"] for b in bases] == ["only-this"]
    assert hidden.status_code == 404


def test_a_token_over_its_rate_is_answered_429_with_retry_after(api: dict[str, Any]) -> None:
    with client(api, "slow") as c:
        answers = [c.get("/v1/writes/stats") for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert answers[2].status_code == 429 and int(answers[2].headers["retry-after"]) >= 1


def test_request_bodies_and_uploads_are_bounded(api: dict[str, Any]) -> None:
    with client(api, "operator") as c:
        big_body = c.post("/v1/memories", json=memory(50, content="x" * 70_000))
        upload_id = c.post("/v1/uploads").json()["upload_id"]
        big_file = c.put(f"/v1/uploads/{upload_id}/files/big.txt", content=b"y" * 400_000)
        streamed = c.put(f"/v1/uploads/{upload_id}/files/chunked.txt",
                         content=iter([b"z" * 100_000 for _ in range(4)]))
        unsafe = c.put(f"/v1/uploads/{upload_id}/files/..%2F..%2Fescape.txt", content=b"hello")
    assert big_body.status_code == 413
    assert big_file.status_code == 413 and streamed.status_code == 413
    assert unsafe.status_code in (400, 404)
    spool = Path(api["data_dir"])
    assert not [p for p in spool.rglob("big.txt")] and not [p for p in spool.rglob("chunked.txt")]
    assert not list(spool.rglob("escape.txt"))


def test_dify_retrieval_answers_in_difys_shape(api: dict[str, Any]) -> None:
    kb = "svc-dify"
    with client(api, "operator") as c:
        c.post("/v1/memories/batch", json={"memories": [
            memory(60, project=kb, tags=["ops"]), memory(61, project=kb, tags=["dev"]),
            {"content": "Dify reads memsys through the external knowledge API.", "project": kb, "repo": "docs",
             "agent": "writer", "tags": ["ops"]}]})
    request = {"knowledge_id": kb, "query": "external knowledge API", "retrieval_setting": {"top_k": 2,
                                                                                           "score_threshold": 0.0}}
    with client(api, "viewer") as c:
        answer = c.post("/retrieval", json=request)
        tagged = c.post("/retrieval", json={**request, "retrieval_setting": {"top_k": 5, "score_threshold": 0.0},
                                            "metadata_condition": {"logical_operator": "and", "conditions": [
                                                {"name": ["tags"], "comparison_operator": "contains",
                                                 "value": "dev"}]}})
        high = c.post("/retrieval", json={**request, "retrieval_setting": {"top_k": 5, "score_threshold": 0.999}})
        unknown = c.post("/retrieval", json={**request, "knowledge_id": "no-such-kb"})
    with client(api, None) as c:
        malformed = c.post("/retrieval", json=request, headers={"Authorization": "Token abc"})
        invalid = c.post("/retrieval", json=request, headers={"Authorization": "Bearer msk_wrong"})
    records = answer.json()["records"]
    assert answer.status_code == 200 and 1 <= len(records) <= 2
    assert records[0]["content"].startswith("Dify reads memsys")
    assert set(records[0]) == {"content", "score", "title", "metadata"} and isinstance(records[0]["metadata"], dict)
    assert all(0 <= r["score"] <= 1 for r in records)
    assert [r["metadata"]["tags"] for r in tagged.json()["records"]] == [["dev"]]
    assert all(r["score"] >= 0.999 for r in high.json()["records"])
    assert unknown.status_code == 404 and unknown.json()["error_code"] == 2001
    assert malformed.status_code == 403 and malformed.json()["error_code"] == 1001
    assert invalid.status_code == 403 and invalid.json()["error_code"] == 1002
    assert set(invalid.json()) == {"error_code", "error_msg"}


def _events(c: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with c.stream("GET", f"/v1/imports/{job_id}/events") as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield name, json.loads(line[6:])


def test_upload_import_follow_cancel_and_resume_over_http(api: dict[str, Any]) -> None:
    kb = "svc-import"
    texts = sentences(120, "the service import")
    with client(api, "operator") as c:
        upload_id = c.post("/v1/uploads").json()["upload_id"]
        sent = c.put(f"/v1/uploads/{upload_id}/files/notes.jsonl", content=jsonl(texts))
        started = c.post("/v1/imports", json={"upload_id": upload_id, "project": kb, "repo": "docs"})
        job_id = started.json()["job_id"]
        cancelled = c.post(f"/v1/imports/{job_id}/cancel")
        wait_until(lambda: c.get(f"/v1/imports/{job_id}").json()["state"] == "cancelled", timeout=120,
                   what="the import to stop")
        stopped = c.get(f"/v1/imports/{job_id}").json()
        resumed = c.post(f"/v1/imports/{job_id}/resume")
        events = list(_events(c, job_id))
        failures = c.get(f"/v1/imports/{job_id}/failures")
        metrics = c.get(f"/v1/imports/{job_id}/metrics")
        retry = c.post(f"/v1/imports/{job_id}/retry")
        documents = c.get(f"/v1/documents?project={kb}").json()
        jobs = c.get("/v1/imports").json()
    with client(api, "viewer") as c:
        refused = c.post(f"/v1/imports/{job_id}/cancel")
    assert sent.status_code == 201 and sent.json()["bytes"] == len(jsonl(texts))
    assert started.status_code == 202 and started.json()["project"] == kb
    assert cancelled.status_code == 200
    assert stopped["processed"] < len(texts)
    assert resumed.status_code == 200
    assert events[-1][0] == "end" and events[-1][1]["state"] == "completed"
    assert all(name in ("progress", "end") for name, _ in events)
    assert events[-1][1]["written"] + events[-1][1]["unchanged"] == len(texts)
    assert failures.json() == [] and metrics.status_code == 200
    assert retry.json() == {"job_id": job_id, "retrying": 0}
    assert documents and all(d["source_file"].startswith("notes.jsonl") for d in documents)
    assert sum(d["memories"] for d in documents) == len(texts)
    assert job_id in [j["job_id"] for j in jobs]
    assert refused.status_code == 403
    assert str(api["data_dir"]) not in json.dumps(jobs)


def test_a_saved_source_is_imported_by_naming_it(api: dict[str, Any]) -> None:
    folder = api["data_dir"] / "shared" / "handbook"
    folder.mkdir(parents=True)
    (folder / "onboarding.md").write_text("New colleagues get a laptop and a badge on their first day.")
    (folder / "leave.md").write_text("Holidays are requested two weeks ahead in the staff portal.")
    engine = Engine(Settings.load(env=api["env"], secrets_path=Path("/nonexistent")))
    try:
        engine.sources.add("handbook", "folder", str(folder), defaults=MemoryDefaults("handbook", "main", "importer"))
    finally:
        engine.close()
    with client(api, "viewer") as c:
        listed = c.get("/v1/sources").json()
        refused = c.post("/v1/sources/handbook/sync")
    assert [(s["name"], s["kind"], s["project"]) for s in listed] == [("handbook", "folder", "handbook")]
    assert refused.status_code == 403 and "needs the operator role" in refused.json()["detail"]
    with client(api, "limited") as c:  # a token for another knowledge base does not see it
        assert c.get("/v1/sources").json() == []
        assert c.post("/v1/sources/handbook/sync").status_code == 404
    with client(api, "operator") as c:
        started = c.post("/v1/sources/handbook/sync")
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 300
        while not (syncs := c.get("/v1/sources/handbook/syncs").json()) or syncs[0]["state"] in ("running", "importing"):
            assert time.monotonic() < deadline, syncs
            time.sleep(0.2)
        sync = syncs[0]
        assert (sync["state"], sync["new"], sync["removed"], sync["error"]) == ("done", 2, 0, ""), sync
        job = c.get(f"/v1/imports/{sync['job_id']}").json()
        assert (job["project"], job["written"], job["failed"]) == ("handbook", 2, 0)
        hits = c.post("/v1/search", json={"query": "first day laptop badge", "limit": 1,
                                         "filter": {"project": "handbook"}}).json()
    assert "laptop and a badge" in json.dumps(hits)


def test_fifty_concurrent_single_writers_share_batches(api: dict[str, Any]) -> None:
    with client(api, "viewer") as c:
        before = c.get("/v1/writes/stats").json()
    results: list[httpx.Response] = [None] * 50  # type: ignore[list-item]
    barrier = threading.Barrier(50)

    def write(i: int) -> None:
        with client(api, "operator") as c:
            barrier.wait()
            results[i] = c.post("/v1/memories", json=memory(i, project="svc-fifty"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with client(api, "viewer") as c:
        after = c.get("/v1/writes/stats").json()
        stored = c.get("/v1/memories?project=svc-fifty&limit=100").json()["memories"]
    uuids = [r.json()["uuid"] for r in results]
    assert all(r.status_code == 201 for r in results)
    assert len(set(uuids)) == 50
    assert sorted(m["uuid"] for m in stored) == sorted(uuids)
    assert after["memories"] - before["memories"] == 50
    assert after["batches"] - before["batches"] < 50 / 2
    assert after["embedding_requests"] - before["embedding_requests"] < 50 / 2
    assert after["weaviate_batches"] - before["weaviate_batches"] < 50 / 2


WRITER = """
import sys, httpx
url, token = sys.argv[1], sys.argv[2]
with httpx.Client(base_url=url, headers={"Authorization": "Bearer " + token}, timeout=120) as c:
    for i in range(10_000):
        r = c.post("/v1/memories", json={"content": f"Killed writer note {i}: keep it.", "project": "svc-killed",
                                         "repo": "r", "agent": "w"})
        r.raise_for_status()
        print(r.json()["uuid"], flush=True)
"""


def test_a_writer_killed_mid_request_loses_nothing_acknowledged(api: dict[str, Any]) -> None:
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, api["url"], api["tokens"]["operator"]],
                              stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    acknowledged: list[str] = []
    assert writer.stdout is not None
    for line in writer.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= 8:
            break
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    acknowledged += [line.strip() for line in writer.stdout.read().splitlines() if line.strip()]
    with client(api, "viewer") as c:
        for uuid in acknowledged:
            assert c.get(f"/v1/memories/{uuid}").status_code == 200, uuid
        stored = c.get("/v1/memories?project=svc-killed&limit=1000").json()["memories"]
    assert len(stored) in (len(acknowledged), len(acknowledged) + 1)  # + the one in flight, if it landed


def test_tokens_are_listed_with_last_use_and_revoked_for_good(api: dict[str, Any]) -> None:
    env = api["env"]
    token = make_token(env, "short-lived", "viewer")
    with client(api, None, Authorization=f"Bearer {token}") as c:
        assert c.get("/v1/writes/stats").status_code == 200
    listed = json.loads(run_memsys(["tokens", "list", "--json"], env).stdout)
    mine = next(t for t in listed if t["name"] == "short-lived")
    assert mine["last_used_at"] is not None and mine["role"] == "viewer" and not mine["revoked"]
    assert token not in json.dumps(listed)
    revoked = run_memsys(["tokens", "revoke", mine["token_id"]], env)
    assert revoked.returncode == 0
    with client(api, None, Authorization=f"Bearer {token}") as c:
        assert c.get("/v1/writes/stats").status_code == 401
    again = run_memsys(["tokens", "revoke", mine["token_id"]], env)
    assert again.returncode == 2 and "already revoked" in again.stderr


def test_every_call_is_audited_under_its_token(api: dict[str, Any]) -> None:
    db = sqlite3.connect(Path(api["data_dir"]) / "jobs.sqlite3")
    rows = db.execute("SELECT actor, action, outcome FROM audit").fetchall()
    db.close()
    assert ("API token operator agent", "memories.written", "done") in {(a.rsplit(" (", 1)[0], b, c)
                                                                       for a, b, c in rows}
    refusals = [r for r in rows if r[2] == "refused" and r[0].startswith("API token viewer agent")]
    assert refusals, "a viewer's refused write is in the audit trail"


def test_anonymous_service_off_loopback_refuses_to_start(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    done = run_memsys(["api", "--host", "0.0.0.0", "--port", "1"], env, timeout=120)
    assert done.returncode != 0
    assert "without API tokens" in done.stderr + done.stdout


def test_the_secret_and_the_tokens_never_reach_responses_or_logs(api: dict[str, Any]) -> None:
    secrets = [SENTINEL, *api["tokens"].values()]
    texts = list(api["responses"])
    texts += [p.read_text(errors="replace") for p in Path(api["data_dir"]).rglob("*.log*") if p.is_file()]
    texts.append(Path(api["server"].log_path).read_text(errors="replace"))
    jobs_db = (Path(api["data_dir"]) / "jobs.sqlite3").read_bytes()
    assert len(texts) > 20
    for secret in secrets:
        assert not [t for t in texts if secret in t], secret[:8]
        assert secret.encode() not in jobs_db
