"""Dify's External Knowledge API (`POST /retrieval`): a knowledge base's memories best
matching a query, as Dify's records (content, score, title, metadata). `metadata_condition`
is applied to the memories' fields (repo, agent, tags, source, source_file,
source_location, document_id, created_at) with Dify's comparison operators."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from memsys.access import AuthorizedEngine
from memsys.engine import MemoryFilter, StoredMemory
from memsys.service.schemas import DifyCondition, DifyRecord, DifyRetrievalIn, DifyRetrievalOut

# Searched beyond top_k when conditions are checked after the search, so enough remain.
_OVERFETCH = 4


def metadata(m: StoredMemory) -> dict[str, Any]:
    return {"uuid": m.uuid, "project": m.project, "repo": m.repo, "agent": m.agent, "tags": list(m.tags),
            "source": m.source, "source_file": m.source_file, "source_location": m.source_location,
            "document_id": m.document_id, "created_at": m.created_at.isoformat() if m.created_at else None,
            "matched_by": m.matched_by}


def retrieve(engine: AuthorizedEngine, body: DifyRetrievalIn) -> DifyRetrievalOut:
    """The records Dify asked for: hybrid search in the knowledge base (project
    `knowledge_id`), at most `top_k`, none scoring below `score_threshold`."""
    setting = body.retrieval_setting
    conditions = body.metadata_condition
    checks = [_check(c) for c in conditions.conditions] if conditions else []
    limit = setting.top_k * (_OVERFETCH if checks else 1)
    hits = engine.memories.search(body.query, limit=limit, where=MemoryFilter(project=body.knowledge_id))
    records = []
    for m in hits:
        meta = metadata(m)
        if checks:
            outcomes = [check(meta) for check in checks]
            if not (any(outcomes) if conditions and conditions.logical_operator == "or" else all(outcomes)):
                continue
        score = float(m.score or 0.0)
        if score < setting.score_threshold:
            continue
        records.append(DifyRecord(content=m.content, score=score, title=m.source_file or m.document_id or m.uuid,
                                  metadata=meta))
        if len(records) == setting.top_k:
            break
    return DifyRetrievalOut(records=records)


def _check(condition: DifyCondition) -> Callable[[dict[str, Any]], bool]:
    """A test of one memory's metadata; ValueError for an operator memsys does not know."""
    names = condition.name if isinstance(condition.name, list) else [condition.name]
    op = condition.comparison_operator.strip().lower()
    value = condition.value
    wanted = [str(v) for v in value] if isinstance(value, list) else ([] if value is None else [str(value)])

    def one(field: Any) -> bool:
        texts = [str(v) for v in field] if isinstance(field, list) else ([] if field in (None, "") else [str(field)])
        joined = " ".join(texts)
        if op == "empty":
            return not texts
        if op == "not empty":
            return bool(texts)
        if op in ("before", "after"):
            if not texts or not wanted:
                return False
            when, limit = dt.datetime.fromisoformat(texts[0]), _instant(wanted[0])
            return when < limit if op == "before" else when > limit
        tests: dict[str, Callable[[], bool]] = {
            "contains": lambda: any(w in t for w in wanted for t in texts),
            "not contains": lambda: not any(w in t for w in wanted for t in texts),
            "start with": lambda: any(joined.startswith(w) for w in wanted),
            "end with": lambda: any(joined.endswith(w) for w in wanted),
            "is": lambda: bool(wanted) and (wanted[0] in texts if isinstance(field, list) else joined == wanted[0]),
            "is not": lambda: not (bool(wanted) and (wanted[0] in texts if isinstance(field, list) else joined == wanted[0])),
            "in": lambda: any(t in wanted for t in texts),
            "not in": lambda: not any(t in wanted for t in texts),
            "=": lambda: joined == (wanted[0] if wanted else ""),
            "≠": lambda: joined != (wanted[0] if wanted else ""),
        }
        if op not in tests:
            raise ValueError(f"the comparison {condition.comparison_operator!r} is not one memsys applies to "
                             f"memory fields (use {', '.join(tests)}, empty, not empty, before, after)")
        return tests[op]()

    if op not in ("empty", "not empty", "before", "after"):
        one(None)  # an unknown operator is refused before anything is searched

    return lambda meta: any(one(meta.get(name)) for name in names)


def _instant(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
