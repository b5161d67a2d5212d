"""Weaviate's own backups: of the data directory's embedded server through its
`backup-filesystem` module (every collection copied by the server itself, objects, vectors
and indexes, into a folder memsys names, and restored from such a folder into an empty
store), or, with MEMSYS_BACKUP_BACKEND=s3, of the configured server or cluster through its
`backup-s3` module into a folder of the bucket memsys names (the cluster's nodes are given
the bucket's endpoint and credentials by their operator: BACKUP_S3_*, AWS_*).

Spoken over Weaviate's REST API (the calls behind the client's `backup` namespace), so that
a module that is not enabled and a server that stopped mid-way are told apart in plain
words. A restore goes onto a node of the backup's own name (`adopt_node_name`): with
`node_mapping` Weaviate 1.35 restored the shards, but every read then failed with "no read
replica found".
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import httpx

from memsys.config import Settings, redact_url
from memsys.errors import StoreUnavailableError, scrub, weaviate_errors
from memsys.store.client import NodeAddress, connect
from memsys.store.server import adopt_node_name, api_key, connect_client, release_client, running_state

BACKEND = "filesystem"
# Where Weaviate's part of a set goes: a folder (backup-filesystem) or, for s3, the path of
# a folder in the bucket the settings name.
Where = Union[Path, str]
_POLL_SECONDS = 0.2
_TIMEOUT = 3600.0


class WeaviateBackupError(StoreUnavailableError):
    """Weaviate could not make or restore a backup; says why in plain words."""


@dataclass(frozen=True)
class WeaviateBackup:
    """What Weaviate made: its node and the collections in it with their object counts."""

    node: str
    collections: dict[str, int]


@dataclass(frozen=True)
class _Target:
    """The Weaviate a backup is asked of: its REST address, its key and its node(s)."""

    url: str
    key: str
    node: str
    embedded: bool


def _backend(settings: Settings) -> str:
    return "s3" if settings.backup_backend == "s3" else BACKEND


def _location(settings: Settings, where: Where) -> tuple[dict[str, str], dict[str, str]]:
    """The request's `config` and the status call's query parameters for `where`."""
    if _backend(settings) == "s3":
        return {"Bucket": settings.backup_s3_bucket, "Path": str(where)}, {"bucket": settings.backup_s3_bucket,
                                                                          "path": str(where)}
    folder = str(Path(where).resolve())
    return {"Path": folder}, {"path": folder}


def _request(state: _Target, settings: Settings, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {state.key}"} if state.key else {}
    try:
        response = httpx.request(method, f"{state.url}/v1{path}", headers=headers, timeout=60.0, **kwargs)
    except httpx.HTTPError as e:
        raise WeaviateBackupError(f"Weaviate stopped answering during the backup ({type(e).__name__})") from None
    if response.status_code in (404, 422) and "backend" in response.text.lower() and "not" in response.text.lower():
        if not state.embedded:
            raise WeaviateBackupError(f"Weaviate's backup-{_backend(settings)} module is not enabled on "
                                      f"{redact_url(state.url)}: its operator enables it (ENABLE_MODULES)")
        raise WeaviateBackupError("Weaviate's backup module is not enabled on the running memsys server (it was started "
                                  "by an older memsys): `python -m memsys server stop`, then try again")
    if response.status_code >= 400:
        raise WeaviateBackupError(f"Weaviate refused the backup request ({response.status_code}): "
                                  f"{scrub(_message(response), settings.secrets)}")
    return dict(response.json())


def _message(response: httpx.Response) -> str:
    try:
        errors = response.json().get("error") or []
        return "; ".join(str(e.get("message", e)) for e in errors) or response.text[:300]
    except ValueError:
        return response.text[:300]


def _wait(state: _Target, settings: Settings, path: str, params: dict[str, str], what: str) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        status = _request(state, settings, "GET", path, params=params)
        if status.get("status") == "SUCCESS":
            return
        if status.get("status") in ("FAILED", "CANCELED"):
            why = scrub(str(status.get("error") or status.get("status")), settings.secrets)
            raise WeaviateBackupError(f"Weaviate's {what} failed: {why}")
        time.sleep(_POLL_SECONDS)
    raise WeaviateBackupError(f"Weaviate's {what} did not finish within {_TIMEOUT:.0f} s")


def _connect(settings: Settings) -> tuple[Any, _Target]:
    if settings.weaviate_url:
        if _backend(settings) != "s3":
            raise WeaviateBackupError("a folder on this machine holds backups of the embedded Weaviate only; this data "
                                      f"directory uses the Weaviate at {redact_url(settings.weaviate_url)}: set "
                                      "MEMSYS_BACKUP_BACKEND=s3 and its bucket (its nodes need backup-s3)")
        client = connect(settings)
        try:
            nodes = ",".join(sorted(n.name for n in client.cluster.nodes()))
        except weaviate_errors():
            nodes = ""
        address = NodeAddress.parse(settings.weaviate_nodes[0], settings)
        return client, _Target(address.rest, settings.weaviate_api_key.get(), nodes, False)
    if _backend(settings) == "s3":
        raise WeaviateBackupError("MEMSYS_BACKUP_BACKEND=s3 backs up a Weaviate server or cluster (WEAVIATE_URL); the "
                                  "embedded Weaviate's backups go to the backups folder: unset MEMSYS_BACKUP_BACKEND")
    client, state = connect_client(settings)
    return client, _Target(state.url, api_key(settings), state.node, True)


def _release(settings: Settings, client: Any, target: _Target | None) -> None:
    client.close()
    if target is None or target.embedded:
        release_client(settings)


def counts(client: Any) -> dict[str, int]:
    """Objects per collection, counted by Weaviate."""
    return {name: int(client.collections.get(name).aggregate.over_all(total_count=True).total_count or 0)
            for name in sorted(client.collections.list_all(simple=True))}


def create_backup(settings: Settings, backup_id: str, where: Where,
                  on_started: Callable[[], None] | None = None) -> WeaviateBackup:
    """Weaviate copies every collection into `where/<backup_id>/` (a folder, or the path of
    one in the bucket) and this returns once it says it succeeded; `on_started` is called
    once Weaviate has accepted the request."""
    client, state = _connect(settings)
    backend = _backend(settings)
    try:
        found = counts(client)
        if backend == BACKEND:
            Path(where).mkdir(parents=True, exist_ok=True)
        if found:
            config, params = _location(settings, where)
            _request(state, settings, "POST", f"/backups/{backend}", json={"id": backup_id, "config": config})
            if on_started is not None:
                on_started()
            _wait(state, settings, f"/backups/{backend}/{backup_id}", params, "backup")
        return WeaviateBackup(state.node, found)
    except weaviate_errors() as e:
        raise WeaviateBackupError(f"Weaviate did not answer as expected during the backup: {type(e).__name__}") from None
    finally:
        _release(settings, client, state)


def backup_status(settings: Settings, backup_id: str, where: Where) -> dict[str, Any]:
    """What Weaviate says of a backup it made in `where`: its status ("SUCCESS", ...) and
    the collections in it."""
    client, state = _connect(settings)
    try:
        _, params = _location(settings, where)
        return _request(state, settings, "GET", f"/backups/{_backend(settings)}/{backup_id}", params=params)
    finally:
        _release(settings, client, state)


def store_counts(settings: Settings) -> dict[str, int]:
    """Objects per collection in the data directory's store (the server is started if needed)."""
    client, state = _connect(settings)
    try:
        return counts(client)
    finally:
        _release(settings, client, state)


def restore_backup(settings: Settings, backup_id: str, where: Where, node: str) -> dict[str, int]:
    """Weaviate restores every collection of the backup in `where/<backup_id>/` (made on
    node `node`) into this data directory's store, which must hold none of them. Returns
    the objects per collection afterwards."""
    data = settings.weaviate_data_dir
    fresh = not settings.weaviate_url and running_state(settings) is None and not (data.is_dir() and any(data.iterdir()))
    # A data directory never started needs no server to know it is empty (nor one started
    # under a node name that would have to change at once).
    if not fresh and store_counts(settings):
        raise ValueError(f"the store of {settings.data_dir} already holds memories: a backup is restored into an "
                         "empty data directory (set MEMSYS_DATA_DIR to a new folder)")
    if not settings.weaviate_url:
        adopt_node_name(settings, node)
    client, state = _connect(settings)
    backend = _backend(settings)
    try:
        config, params = _location(settings, where)
        _request(state, settings, "POST", f"/backups/{backend}/{backup_id}/restore", json={"config": config})
        _wait(state, settings, f"/backups/{backend}/{backup_id}/restore", params, "restore")
        return counts(client)
    except weaviate_errors() as e:
        raise WeaviateBackupError(f"Weaviate did not answer as expected during the restore: {type(e).__name__}") from None
    finally:
        _release(settings, client, state)


@dataclass(frozen=True)
class SampleDifference:
    """One sampled memory that is not the same in two stores."""

    collection: str
    uuid: str
    problem: str


def compare_samples(live: Settings, restored: Settings, size: int, seed: int = 0) -> tuple[int, list[SampleDifference]]:
    """Up to `size` memories per collection, picked at random from the live store, read in
    both stores by uuid with their fields and vectors; returns how many were compared and
    every difference."""
    live_client, live_target = _connect(live)
    try:
        other_client, other_target = _connect(restored)
        try:
            return _compare(live_client, other_client, size, random.Random(seed))
        finally:
            _release(restored, other_client, other_target)
    finally:
        _release(live, live_client, live_target)


def _compare(live: Any, other: Any, size: int, rng: random.Random) -> tuple[int, list[SampleDifference]]:
    compared = 0
    problems: list[SampleDifference] = []
    for name in sorted(live.collections.list_all(simple=True)):
        ids = [str(o.uuid) for o in live.collections.get(name).iterator(return_properties=[])]
        picked = rng.sample(ids, min(size, len(ids)))
        if not other.collections.exists(name):
            problems.append(SampleDifference(name, "", "the collection is missing"))
            continue
        for uuid in picked:
            compared += 1
            a = live.collections.get(name).query.fetch_object_by_id(uuid, include_vector=True)
            b = other.collections.get(name).query.fetch_object_by_id(uuid, include_vector=True)
            if b is None:
                problems.append(SampleDifference(name, uuid, "missing"))
            elif a is not None and dict(a.properties) != dict(b.properties):
                problems.append(SampleDifference(name, uuid, "its fields differ"))
            elif a is not None and dict(a.vector) != dict(b.vector):
                problems.append(SampleDifference(name, uuid, "its vector differs"))
    return compared, problems
