"""`memsys db upgrade`: bring the job database (the SQLite file in the data directory, or
PostgreSQL when MEMSYS_DATABASE_URL names one) up to date with this memsys's schema. Every
process does the same when it first uses the database; the command does it ahead of time
(before starting workers on several machines, say) and shows what is recorded."""
from __future__ import annotations

import argparse
import time

from memsys.config import Settings, redact_url
from memsys.jobs.schema import upgrade_job_database


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = groups.add_parser("db", help="the job database: bring its schema up to date")
    sub = db.add_subparsers(dest="command", required=True)
    upgrade = sub.add_parser(
        "upgrade", help="run the job database's pending migrations (safe to run again: nothing is done twice)",
        description="Runs the numbered migrations the job database has not recorded yet, in one transaction, and "
        "lists every migration it has recorded. The database is the SQLite file in the data directory, or the "
        "PostgreSQL database MEMSYS_DATABASE_URL names.")
    upgrade.set_defaults(func=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    settings = Settings.load()
    where = redact_url(settings.database_url) if settings.database_url else str(settings.jobs_db)
    state = upgrade_job_database(settings.job_database, settings.jobs_db_timeout)
    if state.ran:
        print(f"Upgraded the job database {where}: " + ", ".join(f"{m.version} {m.name}" for m in state.ran) + ".")
    else:
        print(f"The job database {where} is up to date; nothing was changed.")
    for version, name, at in state.recorded:
        print(f"  {version:>3}  {name}  (applied {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))})")
    return 0
