"""The entry point of the command line: `memsys cache ...`, `import ...`, `jobs ...` (or
`python -m memsys`). It hands each command module the subparsers to add its groups to."""
from __future__ import annotations

import argparse
import gc
import sys
from typing import Sequence

from memsys import __version__
from memsys.cli import backup, cache, cluster, db, jobs, logs, memories, reembed, server, service, sources, workers
from memsys.cli.confirm import EXIT_CODES
from memsys.config import ConfigError
from memsys.errors import MemsysError
from memsys.logs import set_program

# In the order `memsys --help` lists the groups.
_COMMAND_MODULES = (cache, cluster, jobs, memories, reembed, server, logs, sources, service, backup, db, workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsys", description="Import documents into a Weaviate memory store.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"memsys {__version__}")
    groups = parser.add_subparsers(dest="group", required=True)
    for module in _COMMAND_MODULES:
        module.add_commands(groups)
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
