"""Numbers, sizes, durations and times written the way an operator reads them."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from memsys.units import duration, job_state, plural, size  # noqa: F401  (re-exported: one formatter each for the CLI and the dashboard)

if TYPE_CHECKING:
    from memsys.engine import ServerStatus


# What Markdown (and Streamlit's :icon: and :color[...] syntax) acts on inside a line. A
# link or an image needs [ and ], so "(" and ")" may stay; newlines become spaces.
_MARKDOWN = set("\\`*_[]<>#!|~$:")


def plain(text: object) -> str:
    """Text from a memory, a file name or a label, safe inside st.markdown/caption: every
    character Markdown would act on is escaped, so nothing in it becomes a link, an image
    (loaded from anywhere), a heading or HTML."""
    return "".join("\\" + c if c in _MARKDOWN else c for c in str(text)).replace("\n", " ")


def rate(per_second: float | None, unit: str = "memories") -> str:
    if per_second is None or per_second != per_second:
        return "—"
    return f"{per_second:.1f} {unit}/s" if per_second < 100 else f"{per_second:,.0f} {unit}/s"


def percent(fraction: float | None) -> str:
    """0.873 -> "87%"; None -> "—"."""
    if fraction is None or fraction != fraction:
        return "—"
    return f"{fraction * 100:.0f}%"


def count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def money(dollars: float) -> str:
    if dollars == 0:
        return "free"
    return f"${dollars:.4f}" if dollars < 0.01 else f"${dollars:,.2f}"


def when(moment: dt.datetime | float | None, now: dt.datetime | None = None) -> str:
    """A time as "today 14:03", "yesterday 09:12" or "2025-11-20 17:40" (local time)."""
    if moment is None:
        return "—"
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.fromtimestamp(float(moment), tz=dt.timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    local = moment.astimezone()
    today = (now or dt.datetime.now(dt.timezone.utc)).astimezone().date()
    if local.date() == today:
        return f"today {local:%H:%M:%S}"
    if local.date() == today - dt.timedelta(days=1):
        return f"yesterday {local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def batch_plan(sizes: list[int]) -> str:
    """[60, 60, 12] -> "3 batches of 60, 60 and 12 memories"; long plans are summarised."""
    if not sizes:
        return "no batches (nothing to embed or write)"
    head = plural(len(sizes), "batch", "batches")
    if len(sizes) <= 12:
        return f"{head} of {and_list([str(s) for s in sizes])} {'memory' if sizes == [1] else 'memories'}"
    return f"{head} of {min(sizes)} to {max(sizes)} memories (about {sum(sizes) / len(sizes):.0f} each)"


def and_list(items: list[str]) -> str:
    """["project", "repo", "agent"] -> "project, repo and agent"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def server_summary(status: "ServerStatus") -> str:
    """One line on the memsys server: where, since when, memory, clients, idle rule."""
    if status.external:
        return "Weaviate runs elsewhere (a configured server); memsys does not run it"
    state = status.state
    if not status.running or state is None:
        return "memsys server: not running (the next memsys command starts it)"
    clients = plural(len(status.clients), "memsys client")
    idle = (f"stops after {duration(state.idle_seconds)} without clients" if state.idle_seconds
            else "runs until stopped")
    return (f"memsys server at {state.url} since {when(state.started_at)}, "
            f"{size(status.memory_bytes)} in memory, {clients}; {idle}")
