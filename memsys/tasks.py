"""Short operator tasks (cache warm-up, health check, repair, an import's preview) run in
a background thread, so a page never blocks on them: the page starts a task, keeps its id,
and polls `get`; `cancel` asks a task to stop, which a task that checks
`progress.cancelled()` does (a preview stops inside the file it is reading).
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

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
Progress = Callable[[int, int], None]  # (done, total)


class TaskProgress:
    """What a running task is handed: call it with (done, total) to report progress; ask
    `cancelled()` to learn whether someone asked the task to stop."""

    def __init__(self, report: Progress, stop: threading.Event) -> None:
        self._report = report
        self._stop = stop

    def __call__(self, done: int, total: int) -> None:
        self._report(done, total)

    def cancelled(self) -> bool:
        return self._stop.is_set()


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    name: str
    state: str  # running | done | failed | cancelled
    started_at: float
    finished_at: float | None = None
    done: int = 0
    total: int = 0
    result: Any = None
    error: BaseException | None = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def cancelled(self) -> bool:
        return self.state == CANCELLED

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class TaskRunner:
    """Runs callables in daemon threads and remembers their outcome (the last `keep`).
    A task's callable receives a `TaskProgress`: `progress(done, total)` to report, and
    `progress.cancelled()` to check. A task that ends after `cancel` was asked for it
    (by returning or raising) is CANCELLED, its result or error dropped."""

    def __init__(self, keep: int = 100) -> None:
        self._tasks: dict[str, TaskStatus] = {}
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, name: str, work: Callable[[TaskProgress], Any]) -> str:
        task_id = uuid.uuid4().hex[:12]
        stop = threading.Event()
        with self._lock:
            self._tasks[task_id] = TaskStatus(task_id, name, RUNNING, time.time())
            self._stops[task_id] = stop
            finished = [k for k, t in self._tasks.items() if t.finished]
            for old in finished[: max(0, len(self._tasks) - self._keep)]:
                del self._tasks[old]

        def report(done: int, total: int) -> None:
            self._update(task_id, done=done, total=total)

        def run() -> None:
            try:
                result = work(TaskProgress(report, stop))
            except BaseException as e:  # kept on the task; the page that polls it shows it
                outcome: dict[str, Any] = {"state": FAILED, "error": e}
            else:
                outcome = {"state": DONE, "result": result}
            if stop.is_set():
                outcome = {"state": CANCELLED}
            with self._lock:
                self._stops.pop(task_id, None)
            self._update(task_id, finished_at=time.time(), **outcome)

        threading.Thread(target=run, name=f"memsys-task-{name}", daemon=True).start()
        return task_id

    def _update(self, task_id: str, **changes: Any) -> None:
        with self._lock:
            self._tasks[task_id] = dataclasses.replace(self._tasks[task_id], **changes)

    def cancel(self, task_id: str) -> bool:
        """Ask a running task to stop; False when there is no such task still running."""
        with self._lock:
            stop = self._stops.get(task_id)
            if stop is None:
                return False
            stop.set()
            self._tasks[task_id] = dataclasses.replace(self._tasks[task_id], cancel_requested=True)
            return True

    def get(self, task_id: str) -> TaskStatus | None:
        with self._lock:
            return self._tasks.get(task_id)
