"""Build the pinned Weaviate server with Go and put it where the client's embedded mode
looks for it, so embedded mode never tries to download it. The Go build cache lives under
the user's cache directory, so only a fresh machine pays for the build.

The source gets one fix before it is built (PATCHES): Weaviate 1.35.2 checks the cluster
password on gRPC methods under "/weaviate.v1.FileReplicationService", but that service is
named "/clusterapi.FileReplicationService", so on the cluster data port (which listens on
every interface) anyone could pause a shard and list and read its files without the
password. A binary built before the fix is rebuilt.

Usage: python tools/install_weaviate.py
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsys.config import WEAVIATE_VERSION, Settings, user_cache_dir  # noqa: E402


def embedded_binary_path(binary_dir: Path, version: str = WEAVIATE_VERSION) -> Path:
    """Where `weaviate.connect_to_embedded(version=...)` looks (see weaviate/embedded.py)."""
    tag = f"v{version}"
    return binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode('utf-8')).hexdigest()}"


# (file, text in Weaviate's source, its replacement); the name is kept beside the binary.
PATCHES_NAME = "clusterapi-file-replication-auth-1"
PATCHES = [
    (path, '"/weaviate.v1.FileReplicationService"', '"/clusterapi.FileReplicationService"')
    for path in ("adapters/handlers/rest/clusterapi/grpc/server.go", "adapters/handlers/grpc/server.go")
]


def patches_marker(target: Path) -> Path:
    return target.with_name(target.name + ".patches")


def patched_source(go: str, env: dict[str, str], workdir: Path) -> Path:
    """Weaviate's source for the pinned version, downloaded to the module cache, copied
    and patched; returns the copy."""
    module = f"github.com/weaviate/weaviate@v{WEAVIATE_VERSION}"
    subprocess.run([go, "mod", "download", module], env=env, check=True, cwd=str(workdir))
    source = Path(env["GOMODCACHE"]) / "github.com" / "weaviate" / f"weaviate@v{WEAVIATE_VERSION}"
    copy = workdir / "weaviate"
    shutil.copytree(source, copy)
    for path in copy.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    for relative, old, new in PATCHES:
        file = copy / relative
        text = file.read_text(encoding="utf-8")
        if old not in text:
            raise SystemExit(f"cannot patch {relative}: {old} is not there (another Weaviate version?)")
        file.write_text(text.replace(old, new), encoding="utf-8")
    return copy


def main() -> int:
    settings = Settings.load()
    target = embedded_binary_path(settings.weaviate_binary_dir)
    marker = patches_marker(target)
    if target.is_file() and os.access(target, os.X_OK) and marker.is_file() and marker.read_text().strip() == PATCHES_NAME:
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
    print(f"building Weaviate v{WEAVIATE_VERSION} with Go and the fix {PATCHES_NAME} (once per machine, a few minutes)")
    with tempfile.TemporaryDirectory(prefix="weaviate-build-") as tmp_dir:
        source = patched_source(go, env, Path(tmp_dir))
        built = Path(tmp_dir) / "weaviate-server"
        subprocess.run([go, "build", "-o", str(built), "./cmd/weaviate-server"], env=env, check=True, cwd=str(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.replace(target)
    marker.write_text(PATCHES_NAME + "\n", encoding="utf-8")
    print(f"weaviate v{WEAVIATE_VERSION}: built and placed at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
