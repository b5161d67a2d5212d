"""What to do next, from the state of the store and the recent jobs (the Home page)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from memsys.engine import JobProgress
from components import format as fmt

IMPORT, MEMORIES, CACHE, METRICS, SETTINGS, IMPORTS = (
    "pages/import.py", "pages/memories.py", "pages/cache.py", "pages/metrics.py", "pages/settings.py", "pages/imports.py",
)


@dataclass(frozen=True)
class Suggestion:
    text: str
    page: str  # the page that does it
    job: str = ""  # the import it names: the page opens on it (?job=)

    @property
    def query(self) -> dict[str, str] | None:
        return {"job": self.job} if self.job else None


def next_steps(memories: int | None, jobs: Sequence[JobProgress]) -> list[Suggestion]:
    """The few things most worth doing now, most urgent first."""
    if memories is None:
        return [Suggestion("The memory store cannot be reached: check the connection settings.", SETTINGS)]
    steps: list[Suggestion] = []
    running = [j for j in jobs if j.is_active]
    if running:
        steps.append(Suggestion(f"{fmt.plural(len(running), 'import is', 'imports are')} running: watch the progress.", IMPORTS,
                                running[0].job_id))
    interrupted = [j for j in jobs if j.state == "interrupted"]
    if interrupted:
        steps.append(Suggestion(f"{fmt.plural(len(interrupted), 'import was', 'imports were')} interrupted: resume to finish.",
                                IMPORTS, interrupted[0].job_id))
    with_failures = [j for j in jobs if not j.is_active and j.failed]
    if with_failures:
        latest = with_failures[0]
        steps.append(Suggestion(
            f"The import of {fmt.plain(latest.label)} has {fmt.plural(latest.failed, 'failed item')}: see why and retry them.",
            IMPORTS, latest.job_id,
        ))
    if memories == 0 and not running:
        steps.append(Suggestion("The store is empty: import your first documents.", IMPORT))
    elif memories:
        steps.append(Suggestion(f"Search the {fmt.plural(memories, 'memory', 'memories')} you have imported.", MEMORIES))
    if any(j.state == "completed" for j in jobs):
        steps.append(Suggestion("Compare the speed and cache use of your imports.", METRICS))
    return steps
