"""Short operator tasks (cache warm-up, health check, repair) run in a background thread,
so a page never blocks on them: the page starts a task, keeps its id, and polls `get`.
Imports do not use this; they run in the engine's job runner, which persists them.
Thread-safe; one `TaskRunner` per process.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

RUNNING, DONE, FAILED = "running", "done", "failed"
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    name: str
    state: str  # running | done | failed
    started_at: float
    finished_at: float | None = None
    done: int = 0
    total: int = 0
    result: Any = None
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class TaskRunner:
    """Runs callables in daemon threads and remembers their outcome (the last `keep`).
    A task's callable receives a `progress(done, total)` function it may call."""

    def __init__(self, keep: int = 100) -> None:
        self._tasks: dict[str, TaskStatus] = {}
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, name: str, work: Callable[[Progress], Any]) -> str:
        task_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._tasks[task_id] = TaskStatus(task_id, name, RUNNING, time.time())
            finished = [k for k, t in self._tasks.items() if t.finished]
            for old in finished[: max(0, len(self._tasks) - self._keep)]:
                del self._tasks[old]

        def progress(done: int, total: int) -> None:
            self._update(task_id, done=done, total=total)

        def run() -> None:
            try:
                result = work(progress)
            except BaseException as e:  # kept on the task; the page that polls it shows it
                self._update(task_id, state=FAILED, error=e, finished_at=time.time())
            else:
                self._update(task_id, state=DONE, result=result, finished_at=time.time())

        threading.Thread(target=run, name=f"memsys-task-{name}", daemon=True).start()
        return task_id

    def _update(self, task_id: str, **changes: Any) -> None:
        with self._lock:
            self._tasks[task_id] = dataclasses.replace(self._tasks[task_id], **changes)

    def get(self, task_id: str) -> TaskStatus | None:
        with self._lock:
            return self._tasks.get(task_id)
