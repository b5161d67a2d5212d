"""CLI commands for backups: `backup create [NAME]`, `backup list`, `backup restore NAME`
(into an empty data directory; asks first, or --yes), `backup verify NAME`, the restore
drill that says plainly whether a backup gives the store back, and `backup delete NAME`
(asks first, or --yes). The sets go to the backups folder, or with MEMSYS_BACKUP_BACKEND=s3
to the bucket MEMSYS_BACKUP_S3_* names (a Weaviate cluster's backups)."""
from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from memsys.cli.confirm import add_yes, confirmed
from memsys.lazy import LazyName
from memsys.units import size

if TYPE_CHECKING:
    from memsys.engine import Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")

_EXIT_PROBLEM = 1


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `backup` to the command line's groups."""
    _add_backup(groups.add_parser(
        "backup", help="back up the store, the job history, the audit trail and the settings; restore; check a backup"))


def _add_backup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser(
        "create", help="make a backup set in the backups folder (MEMSYS_BACKUP_DIR, default <data dir>/backups)",
        description="Weaviate's own backup of every collection (memories with their embeddings), a consistent copy of "
        "the job database with its audit trail, the settings files and the spool, with a manifest of counts, sizes "
        "and checksums. A backup that cannot finish is marked failed and is never restored.")
    create.add_argument("name", nargs="?", help="lower-case letters, digits, - and _ (default: memsys-<UTC time>)")
    create.set_defaults(func=_create)
    listing = sub.add_parser("list", help="the backup sets, newest first, with their state")
    listing.add_argument("--json", action="store_true", help="print the manifests as JSON")
    listing.set_defaults(func=_list)
    restore = sub.add_parser(
        "restore", help="restore a complete backup into this empty data directory; asks first (or --yes)",
        description="NAME is a backup in the backups folder, or the path of a backup's folder. Only a complete "
        "backup whose checksums still match is restored, and only into a data directory without memories or jobs.")
    restore.add_argument("name")
    add_yes(restore)
    restore.set_defaults(func=_restore)
    verify = sub.add_parser(
        "verify", help="restore a backup into a scratch data directory and compare it with the live store",
        description="Restores NAME into a scratch data directory with its own Weaviate (stopped and removed "
        "afterwards), compares the counts with the backup's manifest and the live store, and a random sample of "
        "memories (uuid, fields, vector) with the live store. Exits 1 when the backup does not restore as it should.")
    verify.add_argument("name")
    verify.add_argument("--sample", type=int, default=50, help="memories compared per collection (default 50)")
    verify.set_defaults(func=_verify)
    delete = sub.add_parser("delete", help="delete a backup (not one being made, restored or checked); asks first (or --yes)")
    delete.add_argument("name")
    add_yes(delete)
    delete.set_defaults(func=_delete)


def _create(args: argparse.Namespace) -> int:
    engine = Engine.from_settings(program="cli")
    try:
        began = time.monotonic()
        made = engine.backups.create(args.name)
        print(f"Backup {made.name} made in {time.monotonic() - began:.1f} s at {made.where}: "
              f"{made.memories:,} memories in {len(made.collections)} collection(s), {made.jobs:,} imports, "
              f"{made.audit_records:,} audit records, {size(made.size_bytes)}.")
        return 0
    finally:
        engine.close()


def _list(args: argparse.Namespace) -> int:
    engine = Engine.from_settings(program="cli")
    try:
        found = engine.backups.list()
        if args.json:
            print(json.dumps([s.to_json() for s in found], indent=2))
            return 0
        if not found:
            print(f"No backups in {engine.backups.directory}.")
            return 0
        print(f"Backups in {engine.backups.directory}:")
        for s in found:
            figures = (f"{s.memories:,} memories, {s.jobs:,} imports, {s.audit_records:,} audit records, "
                       f"{size(s.size_bytes)}") if s.state == "complete" else s.error
            print(f"  {s.name:<28} {s.created:<26} {s.state:<9} {figures}")
        return 0
    finally:
        engine.close()


def _restore(args: argparse.Namespace) -> int:
    engine = Engine.from_settings(program="cli")
    try:
        found = engine.backups.get(args.name)
        stop = confirmed(args, f"would restore backup {found.name} ({found.memories:,} memories, {found.jobs:,} imports, "
                               f"{found.audit_records:,} audit records) into {engine.settings.data_dir}")
        if stop is not None:
            return stop
        began = time.monotonic()
        restored = engine.backups.restore(args.name)
        print(f"Restored backup {found.name} into {engine.settings.data_dir} in {time.monotonic() - began:.1f} s: "
              f"{sum(restored.values()):,} memories, {found.jobs:,} imports, {found.audit_records:,} audit records.")
        return 0
    finally:
        engine.close()


def _delete(args: argparse.Namespace) -> int:
    engine = Engine.from_settings(program="cli")
    try:
        found = engine.backups.get(args.name)
        what = (f"{found.memories:,} memories, {found.jobs:,} imports, {size(found.size_bytes)}"
                if found.state == "complete" else found.state)
        stop = confirmed(args, f"would delete backup {found.name} ({what}) from {engine.backups.directory}")
        if stop is not None:
            return stop
        engine.backups.delete(args.name)
        print(f"Deleted backup {found.name} from {engine.backups.directory}.")
        return 0
    finally:
        engine.close()


def _verify(args: argparse.Namespace) -> int:
    engine = Engine.from_settings(program="cli")
    try:
        print(f"Checking backup {args.name}..." if engine.settings.backup_backend == "s3"
              else f"Restoring backup {args.name} into a scratch data directory...", flush=True)
        report = engine.backups.verify(args.name, sample=args.sample)
        print(report.verdict[0].upper() + report.verdict[1:] + f" (checked in {report.seconds:.1f} s).")
        for line in report.differences[5:]:
            print(f"  {line}")
        return 0 if report.ok else _EXIT_PROBLEM
    finally:
        engine.close()
