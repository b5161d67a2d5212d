"""The command line: `memsys cache ...`, `import ...`, `jobs ...` (or `python -m memsys`).
Each command group registers itself here; all of them call the engine, nothing else."""
from __future__ import annotations

import argparse
import gc
import sys
from typing import Callable, Sequence

from memsys import __version__
from memsys.config import ConfigError
from memsys.errors import MemsysError
from memsys.logs import set_program

# Each group: (name, help, function adding its sub-commands to a subparser).
_GROUPS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = []


def command_group(name: str, help_text: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable[[argparse.ArgumentParser], None]]:
    def register(add: Callable[[argparse.ArgumentParser], None]) -> Callable[[argparse.ArgumentParser], None]:
        _GROUPS.append((name, help_text, add))
        return add

    return register


def build_parser() -> argparse.ArgumentParser:
    import memsys.cli_cache  # noqa: F401  (registers its group)
    import memsys.cli_cluster  # noqa: F401
    import memsys.cli_jobs  # noqa: F401
    import memsys.cli_memories  # noqa: F401
    import memsys.cli_reembed  # noqa: F401
    import memsys.cli_server  # noqa: F401
    import memsys.cli_logs  # noqa: F401

    parser = argparse.ArgumentParser(prog="memsys", description="Import documents into a Weaviate memory store.")
    parser.add_argument("--version", action="version", version=f"memsys {__version__}")
    sub = parser.add_subparsers(dest="group", required=True)
    for name, help_text, add in _GROUPS:
        add(sub.add_parser(name, help=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    set_program("cli")  # log lines and default audit actors say where they came from
    parser = build_parser()
    # Every module the command needs is imported by now: freeze them out of the garbage
    # collector, so the import's periodic collections and the last one at exit do not
    # walk the Weaviate and OpenAI clients' objects each time (a command is short-lived).
    gc.freeze()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, MemsysError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
