"""Figures for issue 26 (months of use on one disk), not part of `make bench` (it takes
minutes): `python -m bench.keep retention [with|without]` and `python -m bench.keep backup [N]`.

- retention: 20 imports of the same folder, a few of its files changing each time, into a
  data directory without retention (spool kept 10 years) and one with it (spool released
  at once, texts pruned at once: MEMSYS_SPOOL_KEEP_DAYS=0, MEMSYS_JOB_TEXTS_KEEP_DAYS as
  `jobs prune --older-than 0d`); each directory's size by part afterwards.
- backup: bench/backups.py (`python -m bench backups`): a store of N memories (default
  10,000), backup, restore into the wiped data directory, timed, with the set's size and
  whether every restored memory equals the live one (uuid, fields, vector).
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import backups
from memsys.config import Settings
from memsys.space import space_report
from memsys.units import size

REPO = Path(__file__).resolve().parent.parent
WORDS = ("backup restore retention cache spool memory document import source disk space vector weaviate "
         "operator archive monthly drill verify prune settled job audit trail summary metrics").split()


def memsys(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "memsys", *args], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3600)
    if done.returncode not in (0, 1):
        raise SystemExit(f"memsys {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {"MEMSYS_DATA_DIR": str(root / "data"), "MEMSYS_BACKUP_DIR": str(root / "backups"),
            "MEMSYS_SERVER_IDLE_SECONDS": "120", "MEMSYS_WEAVIATE_PORT": "8730", "MEMSYS_WEAVIATE_GRPC_PORT": "8731",
            **extra}


def _paragraph(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(40)) + "."


def retention(rounds: int = 20, files: int = 10, only: str = "") -> None:
    for label, extra in (("without retention", {"MEMSYS_SPOOL_KEEP_DAYS": "3650"}),
                         ("with retention", {"MEMSYS_SPOOL_KEEP_DAYS": "0"})):
        if only and label != f"{only} retention":
            continue
        root = Path(tempfile.mkdtemp(prefix="keep-retention-"))
        env = _env(root, **extra)
        rng = random.Random(7)
        folder = root / "notes"
        folder.mkdir()
        texts = {f"note{i:02}.md": "\n\n".join(_paragraph(rng) for _ in range(6)) for i in range(files)}
        began = time.monotonic()
        try:
            for n in range(rounds):
                for name in rng.sample(sorted(texts), 2):  # two files change each round
                    texts[name] = "\n\n".join(_paragraph(rng) for _ in range(6))
                for name, text in texts.items():
                    (folder / name).write_text(text, encoding="utf-8")
                memsys(["import", str(folder), "--project", "bench", "--repo", "notes", "--agent", "bench"], env)
                if extra["MEMSYS_SPOOL_KEEP_DAYS"] == "0":
                    memsys(["jobs", "prune", "--older-than", "0d", "--yes"], env)
            report = space_report(Settings.load(env=env, secrets_path=Path("/nonexistent")))
            parts = ", ".join(f"{name} {size(n)}" for name, n in report.parts.items() if name != "backups")
            print(f"{label}: {rounds} imports of {files} files (2 changing each time) in {time.monotonic() - began:.0f} s;"
                  f" data directory {size(report.total_bytes)} ({parts})")
            print("  " + memsys(["jobs", "--limit", "2"], env).strip().replace("\n", "\n  "))
        finally:
            memsys(["server", "stop"], env)
            shutil.rmtree(root, ignore_errors=True)


def backup(memories: int = 10_000) -> None:
    """Now measured by bench/backups.py (the store built by Weaviate's client batch)."""
    for result in backups.measure(memories):
        print(result.line(), flush=True)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "backup"
    if what == "retention":  # `retention with` or `retention without` runs one of the two
        retention(only=sys.argv[2] if len(sys.argv) > 2 else "")
    else:
        backup(int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
