"""Build the pinned versitygw (a real S3 API over a local folder) with Go, for the tests of
the S3 source kind. The binary and the Go build cache live under the user's cache
directory, so only a fresh machine pays for the build (about two minutes).

Usage: python tools/install_versitygw.py   (prints where the binary is)
Tests find it with `versitygw_binary()`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsys.config import user_cache_dir  # noqa: E402

VERSITYGW_VERSION = "1.8.0"


def versitygw_binary() -> Path:
    return user_cache_dir() / "versitygw" / f"versitygw-v{VERSITYGW_VERSION}"


def main() -> int:
    target = versitygw_binary()
    if target.is_file() and os.access(target, os.X_OK):
        print(f"versitygw v{VERSITYGW_VERSION}: ready at {target}")
        return 0
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None:
        print(
            f"Go is not installed, so versitygw v{VERSITYGW_VERSION} (the S3 server of the S3 source tests) "
            "cannot be built here. Install Go (https://go.dev/dl/) and run `make setup` again."
        )
        return 1 if os.environ.get("CI") == "true" else 0
    gocache = user_cache_dir() / "go"
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="versitygw-build-") as tmp_dir:
        env.update(
            GOBIN=tmp_dir,
            GOCACHE=str(gocache / "build"),
            GOMODCACHE=str(gocache / "mod"),
        )
        print(f"building versitygw v{VERSITYGW_VERSION} with Go (once per machine, about two minutes)")
        subprocess.run(
            [go, "install", f"github.com/versity/versitygw/cmd/versitygw@v{VERSITYGW_VERSION}"],
            env=env, check=True, cwd=tmp_dir,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copy2(Path(tmp_dir) / "versitygw", tmp)
    tmp.chmod(0o755)
    tmp.replace(target)
    print(f"versitygw v{VERSITYGW_VERSION}: built and placed at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
