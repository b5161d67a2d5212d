"""What people type, turned into engine values: tag lists and memory filters."""
from __future__ import annotations

import uuid

from memsys.engine import MemoryDefaults, MemoryFilter
from components import format as fmt


def parse_tags(text: str | None) -> tuple[str, ...]:
    """"alpha, beta ,alpha" -> ("alpha", "beta"): split on commas, trimmed, no repeats."""
    if not text:
        return ()
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def memory_filter(
    project: str = "", repo: str = "", agent: str = "", tags: str = "", source: str = ""
) -> MemoryFilter:
    """A filter from form fields; a blank field does not filter."""
    return MemoryFilter(
        project=project.strip() or None,
        repo=repo.strip() or None,
        agent=agent.strip() or None,
        tags=parse_tags(tags) or None,
        source=source.strip() or None,
    )


def describe_filter(where: MemoryFilter) -> str:
    """"project = demo, tags: a or b" - what a filter matches, for confirmations."""
    parts = [f"{name} = {getattr(where, name)}" for name in ("project", "repo", "agent", "source") if getattr(where, name)]
    if where.tags:
        parts.append("tags: " + " or ".join(where.tags))
    return ", ".join(parts) or "every memory"


def import_defaults(project: str, repo: str, agent: str, tags: str = "", source: str = "") -> MemoryDefaults:
    """The fields every imported memory gets; raises ValueError with a plain sentence."""
    if not project.strip():
        raise ValueError("choose a knowledge base from the list, or New… and type its name")
    missing = [name for name, value in (("repo", repo), ("agent", agent)) if not value.strip()]
    if missing:
        raise ValueError(f"fill in the {fmt.and_list(missing)}: every memory needs a project, a repo and an agent")
    return MemoryDefaults(
        project=project.strip(), repo=repo.strip(), agent=agent.strip(), tags=parse_tags(tags),
        source=source.strip() or "document-import",
    )


def text_lines(text: str) -> list[str]:
    """One text per non-blank line, trimmed, each once (cache warm-up input)."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def checked_memory_id(text: str) -> str:
    """A memory ID as typed, checked: raises ValueError with a plain sentence otherwise."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise ValueError(
            f"{text.strip()!r} is not a memory ID; IDs look like 0f8fad5b-d9cb-469f-a165-70867728950e"
        ) from None
