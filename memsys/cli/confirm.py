"""One rule for every command that deletes or overwrites: it first says what it would do
(with counts), then asks "Proceed? [y/N]" when standard input is a terminal, or needs
`--yes` when it is not (a script, a pipe, cron): without it nothing changes and the exit
code is 2. `--dry-run` only says. When there is nothing to act on (a filter, a file name,
a job or a collection that matches nothing) the command says so, names close matches for
a file name, and exits 4, so a script can tell "nothing matched" from "done"."""
from __future__ import annotations

import argparse
import difflib
import posixpath
import sys
from typing import TYPE_CHECKING, Iterable, Sequence

from memsys.lazy import LazyName

if TYPE_CHECKING:
    from memsys.engine import MemoryFilter
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    MemoryFilter = LazyName("memsys.engine", "MemoryFilter")

NOT_CONFIRMED = 2  # the code argparse and main give an error, too
NOTHING_MATCHED = 4

# Shown under `memsys --help`; the README's "Command line" section says the same.
EXIT_CODES = """\
exit codes:
  0    done
  1    done, with problems to look at (an import's failures, cache problems
       left, a failed check)
  2    an error (the message says what), or not confirmed: a command that deletes
       or overwrites asks "Proceed? [y/N]" on a terminal and needs --yes without
       one; not confirmed, it changed nothing
  3    `server status`: no memsys server runs
  4    nothing matched: the filter, file name, job or collection matched nothing;
       nothing was changed
  130  interrupted (Ctrl-C)
"""
# Under the --help of each command that deletes or overwrites.
RULE = ("Says what it would do, then asks \"Proceed? [y/N]\" when standard input is a terminal; without one it "
        "needs --yes (else it changes nothing and exits 2). Exits 4 when nothing matched.")

YES_HELP = "do it without asking (needed when standard input is not a terminal)"
_SHOWN_MATCHES = 5


def add_yes(p: argparse.ArgumentParser, *, dry_run: str = "", rule: str = RULE) -> None:
    """`--yes` on a command that deletes or overwrites, `--dry-run` (its help) when the
    command has one, and the rule under its --help."""
    p.epilog = rule
    p.add_argument("--yes", "-y", action="store_true", help=YES_HELP)
    if dry_run:
        p.add_argument("--dry-run", action="store_true", help=dry_run)


def confirmed(args: argparse.Namespace, plan: str) -> int | None:
    """Say `plan` ("would delete 42 memories of project kb") and get the go-ahead: None
    to go ahead, else the exit code to return with nothing changed (0 after a dry run,
    NOT_CONFIRMED when refused or declined)."""
    if getattr(args, "dry_run", False):
        print(f"{plan} (dry run: nothing changed)")
        return 0
    if args.yes:
        return None
    print(plan, flush=True)
    if sys.stdin is None or not sys.stdin.isatty():
        print("nothing changed: memsys asks before it deletes or overwrites, and standard input is not a terminal;"
              " add --yes to go ahead", file=sys.stderr)
        return NOT_CONFIRMED
    # The question goes where the terminal is even when the output is piped (`| tee`).
    print("Proceed? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()  # "" at the end of input: no
    if answer.strip().lower() in ("y", "yes"):
        return None
    print("nothing changed")
    return NOT_CONFIRMED


def nothing_matched(message: str, close: Sequence[str] = ()) -> int:
    """Say that there is nothing to act on, and the close matches when there are any;
    the exit code for it."""
    print(message)
    if close:
        print(f"did you mean: {', '.join(close)}?")
    return NOTHING_MATCHED


def describe_filter(where: MemoryFilter) -> str:
    """A filter as people read it: "of document kb/notes.md in knowledge base kb/docs,
    tagged draft or wip"."""
    parts = []
    if where.source_file:
        parts.append(f"of document {where.source_file}")
    if where.project and where.repo:
        parts.append(f"in knowledge base {where.project}/{where.repo}")
    elif where.project:
        parts.append(f"of project {where.project}")
    elif where.repo:
        parts.append(f"of repo {where.repo}")
    if where.agent:
        parts.append(f"written by agent {where.agent}")
    if where.source:
        parts.append(f"from source {where.source}")
    if where.tags:
        parts.append("tagged " + " or ".join(where.tags))
    return ", ".join(parts)


def close_matches(name: str, candidates: Iterable[str], n: int = _SHOWN_MATCHES) -> list[str]:
    """The candidates a file name most likely meant, best first: those that end with it
    as a path (`notes.md` -> `kb/notes.md`), those with its base name, then those difflib
    finds close, by whole path or by base name."""
    wanted = name.strip().replace("\\", "/").strip("/")
    pool = sorted(set(candidates))
    base = posixpath.basename(wanted).lower()
    found: list[str] = []

    def add(matches: Sequence[str]) -> None:
        found.extend(m for m in matches if m not in found and m != name)

    add([c for c in pool if c.lower().endswith("/" + wanted.lower())])
    add([c for c in pool if posixpath.basename(c).lower() == base])
    add(difflib.get_close_matches(wanted, pool, n=n, cutoff=0.8))
    by_base: dict[str, list[str]] = {}
    for c in pool:
        by_base.setdefault(posixpath.basename(c), []).append(c)
    for close in difflib.get_close_matches(posixpath.basename(wanted), list(by_base), n=n, cutoff=0.75):
        add(by_base[close])
    return found[:n]

