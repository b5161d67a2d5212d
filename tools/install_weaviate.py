"""Build the pinned Weaviate server with Go and put it where the client's embedded mode
looks for it, so embedded mode never tries to download it. The Go build cache lives under
the user's cache directory, so only a fresh machine pays for the build.

Usage: python tools/install_weaviate.py
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsys.config import WEAVIATE_VERSION, Settings, user_cache_dir  # noqa: E402


def embedded_binary_path(binary_dir: Path, version: str = WEAVIATE_VERSION) -> Path:
    """Where `weaviate.connect_to_embedded(version=...)` looks (see weaviate/embedded.py)."""
    tag = f"v{version}"
    return binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode('utf-8')).hexdigest()}"


def main() -> int:
    settings = Settings.load()
    target = embedded_binary_path(settings.weaviate_binary_dir)
    if target.is_file() and os.access(target, os.X_OK):
        print(f"weaviate v{WEAVIATE_VERSION}: ready at {target}")
        return 0
    go = shutil.which("go")
    if go is None:
        print(
            f"Go is not installed, so Weaviate v{WEAVIATE_VERSION} cannot be built here. "
            "Embedded mode will try to download the server binary instead, which needs internet. "
            "Install Go (https://go.dev/dl/) and run `make setup` again to build it locally."
        )
        return 0
    gocache = user_cache_dir() / "go"
    env = dict(os.environ)
    env.update(
        GOBIN=str(gocache / "bin"),
        GOCACHE=str(gocache / "build"),
        GOMODCACHE=str(gocache / "mod"),
        GOFLAGS="-mod=mod",
    )
    module = f"github.com/weaviate/weaviate/cmd/weaviate-server@v{WEAVIATE_VERSION}"
    print(f"building Weaviate v{WEAVIATE_VERSION} with Go (once per machine, a few minutes): go install {module}")
    subprocess.run([go, "install", module], env=env, check=True)
    built = gocache / "bin" / "weaviate-server"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.replace(target)
    print(f"weaviate v{WEAVIATE_VERSION}: built and placed at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
