"""What deleting memories must also forget, shared by every group of calls that deletes
them (`memories`, `knowledge`): their text in the job database and spool, and what an
unfinished re-embed already copied of them."""
from __future__ import annotations

from memsys.engine.calls import Parts


def forget_content(engine: Parts, uuids: list[str]) -> None:
    """Before memories are deleted: their text leaves the job database, and a spooled
    file leaves the spool once no job item holds text from it any more."""
    sources = engine.job_store.sources_of(uuids)
    engine.job_store.forget(uuids)
    for job_id, source_file in sources:
        if not engine.job_store.keeps_content_of(job_id, source_file):
            engine.spool.drop(engine.job_store.request(job_id).get("paths") or [], source_file)
    # A re-embed copies from a snapshot: what it already wrote goes too, or the switch
    # to its collection would bring the deleted memories back.
    for target in unfinished_reembeds(engine):
        engine.system.store.with_collection(target, physical=True).delete_ids(uuids)


def unfinished_reembeds(engine: Parts) -> list[str]:
    """The collections re-embed jobs are filling (running, or stopped to be resumed)."""
    versions = set(engine.system.store.versions())
    targets = {j.request.get("reembed_into") for j in engine.job_store.list_jobs(limit=200) if j.state != "completed"}
    return sorted(t for t in targets if t and t in versions)
