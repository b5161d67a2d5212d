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
class Action:
    label: str
    page: str
    icon: str


@dataclass(frozen=True)
class FirstStep:
    """What Home puts first: a sentence and the buttons that do it (the first is primary)."""

    text: str
    actions: tuple[Action, ...]


def primary_step(memories: int | None, jobs: Sequence[JobProgress], may_import: bool = True) -> FirstStep:
    """The one thing most worth doing now, for someone who has just arrived."""
    importing = Action("Import documents", IMPORT, ":material/upload_file:")
    if memories is None:
        return FirstStep("The memory store cannot be reached: check the connection settings.",
                         (Action("Open Settings", SETTINGS, ":material/settings:"),))
    if any(j.is_active for j in jobs) and may_import:
        return FirstStep("An import is running.", (Action("Watch the import", IMPORT, ":material/sync:"),))
    if memories == 0:
        if not may_import:
            return FirstStep("Nothing has been imported yet: ask an operator to import the first documents.", ())
        return FirstStep("Nothing has been imported yet: start with your documents.", (importing,))
    searching = Action("Search memories", MEMORIES, ":material/search:")
    return FirstStep(f"{fmt.plural(memories, 'memory', 'memories')} ready to search.",
                     (searching, importing) if may_import else (searching,))


@dataclass(frozen=True)
class Suggestion:
    text: str
    page: str  # the page that does it
    job: str = ""  # the import it names: the page opens on it (?job=)

    @property
    def query(self) -> dict[str, str] | None:
        return {"job": self.job} if self.job else None


def next_steps(memories: int | None, jobs: Sequence[JobProgress], *, with_first_step: bool = True) -> list[Suggestion]:
    """The few things most worth doing now, most urgent first; without `with_first_step`,
    leaving out what `primary_step` already offers (import the first documents, search)."""
    if memories is None:
        return [Suggestion("The memory store cannot be reached: check the connection settings.", SETTINGS)] if with_first_step else []
    steps: list[Suggestion] = []
    running = [j for j in jobs if j.is_active]
    if running and with_first_step:
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
            f"The import of {fmt.plain(latest.label)} has {fmt.plural(latest.failed, 'failure')}: see why.",
            IMPORTS, latest.job_id,
        ))
    if with_first_step and memories == 0 and not running:
        steps.append(Suggestion("The store is empty: import your first documents.", IMPORT))
    elif with_first_step and memories:
        steps.append(Suggestion(f"Search the {fmt.plural(memories, 'memory', 'memories')} you have imported.", MEMORIES))
    if any(j.state == "completed" for j in jobs):
        steps.append(Suggestion("Compare the speed and cache use of your imports.", METRICS))
    return steps
