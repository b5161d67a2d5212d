"""An S3 bucket and a folder in it: where backup sets go when MEMSYS_BACKUP_BACKEND is s3
(memsys/engine/backups.py), and where the spool's files go when MEMSYS_SPOOL_BACKEND is s3
(memsys/spool.py). Put and get a file or a folder under a key prefix, read and write one
small JSON object, list the folders, checksum a prefix by its objects' keys, sizes and ETags
(the server's own content hash), delete a prefix. Every message names the bucket and key,
never the secret key (the client is given it; errors are scrubbed of it)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from memsys.config import Settings
from memsys.errors import scrub
from memsys.lazy import caught_once_imported, lazy_module, lazy_names

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
else:  # imported on first use (memsys.lazy): only a backup to a bucket loads the S3 client
    boto3 = lazy_module("boto3")
    (Config,) = lazy_names("botocore.config", "Config")
# The S3 client's errors, for except clauses that do not import it: the server's answers
# (ClientError), and a server not reached (BotoCoreError).
_answered = caught_once_imported("botocore.exceptions", "ClientError")
_unreached = caught_once_imported("botocore.exceptions", "BotoCoreError")
_s3_errors = caught_once_imported("botocore.exceptions", "ClientError", "BotoCoreError")


class BucketError(ValueError):
    """The bucket could not be used; says which bucket and why, in plain words."""


class Bucket:
    """One bucket and a folder in it, on AWS or an S3-compatible server at `endpoint`."""

    def __init__(self, name: str, root: str, *, endpoint: str, region: str, access_key: str, secret_key: str,
                 secrets: list[str]) -> None:
        self.name = name
        self.root = root.strip("/")
        self.endpoint = endpoint or None
        self._secrets = secrets
        config = Config(connect_timeout=30, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"},
                        s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=region, aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None, config=config)

    @classmethod
    def for_backups(cls, settings: Settings) -> "Bucket":
        """MEMSYS_BACKUP_S3_BUCKET and _PATH, on its server with its keys."""
        return cls(settings.backup_s3_bucket, settings.backup_s3_path, endpoint=settings.backup_s3_endpoint,
                   region=settings.backup_s3_region, access_key=settings.backup_s3_access_key,
                   secret_key=settings.backup_s3_secret_key.get(), secrets=settings.secrets)

    @classmethod
    def for_spool(cls, settings: Settings) -> "Bucket":
        """MEMSYS_SPOOL_S3_BUCKET and _PATH, on its server with its keys."""
        return cls(settings.spool_s3_bucket, settings.spool_s3_path, endpoint=settings.spool_s3_endpoint,
                   region=settings.spool_s3_region, access_key=settings.spool_s3_access_key,
                   secret_key=settings.spool_s3_secret_key.get(), secrets=settings.secrets)

    @property
    def where(self) -> str:
        """The bucket and folder, fit to show (no credentials are part of it)."""
        return f"s3://{self.name}/{self.root}".rstrip("/")

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.root, *parts) if p.strip("/"))

    def _fail(self, e: Exception, what: str) -> BucketError:
        if isinstance(e, _answered()):
            code = str(e.response.get("Error", {}).get("Code", "")) or "an error"
            reason = f"the S3 server answered {code}"
        else:
            reason = f"the S3 server could not be reached ({type(e).__name__})"
        return BucketError(scrub(f"{what} in {self.where}: {reason}", self._secrets))

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kwargs)
            yield from page.get("Contents", ())
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def folders(self) -> list[str]:
        """The names of the folders directly under the root."""
        prefix = self.key() + "/" if self.root else ""
        found: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix, Delimiter="/"):
                found += [str(p["Prefix"])[len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", ())]
        except _s3_errors() as e:
            raise self._fail(e, "the backups could not be listed") from None
        return found

    def read_json(self, *parts: str) -> dict[str, Any] | None:
        """A JSON object, or None when there is none."""
        try:
            body = self.client.get_object(Bucket=self.name, Key=self.key(*parts))["Body"].read()
        except _answered() as e:
            if str(e.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(e, f"{self.key(*parts)} could not be read") from None
        except _unreached() as e:
            raise self._fail(e, f"{self.key(*parts)} could not be read") from None
        try:
            return dict(json.loads(body))
        except ValueError:
            return None

    def write_json(self, data: dict[str, Any], *parts: str) -> None:
        try:
            self.client.put_object(Bucket=self.name, Key=self.key(*parts),
                                   Body=json.dumps(data, indent=2).encode("utf-8"), ContentType="application/json")
        except _s3_errors() as e:
            raise self._fail(e, f"{self.key(*parts)} could not be written") from None

    def keys(self, folder: str, starting: str = "") -> list[str]:
        """The keys directly in `folder` (relative to it) that start with `starting`."""
        prefix = self.key(folder) + "/"
        try:
            page = self.client.list_objects_v2(Bucket=self.name, Prefix=prefix + starting, Delimiter="/")
        except _s3_errors() as e:
            raise self._fail(e, f"{prefix} could not be listed") from None
        return [str(o["Key"])[len(prefix):] for o in page.get("Contents", ())]

    def delete_key(self, *parts: str) -> None:
        try:
            self.client.delete_object(Bucket=self.name, Key=self.key(*parts))
        except _s3_errors() as e:
            raise self._fail(e, f"{self.key(*parts)} could not be deleted") from None

    def get_file(self, target: Path, *parts: str) -> None:
        try:
            self.client.download_file(self.name, self.key(*parts), str(target))
        except _s3_errors() as e:
            raise self._fail(e, f"{self.key(*parts)} could not be read") from None

    def sizes(self, *parts: str) -> dict[str, int]:
        """Key (relative to `parts`) -> size of every object under `parts`."""
        prefix = self.key(*parts) + "/"
        try:
            return {str(o["Key"])[len(prefix):]: int(o["Size"]) for o in self._objects(prefix)}
        except _s3_errors() as e:
            raise self._fail(e, f"{prefix} could not be listed") from None

    def put_file(self, path: Path, *parts: str) -> None:
        key = self.key(*parts)
        try:
            self.client.upload_file(str(path), self.name, key)
        except _s3_errors() as e:
            raise self._fail(e, f"{key} could not be written") from None

    def put_folder(self, folder: Path, *parts: str) -> None:
        """Every file under `folder`, at the same relative keys under `parts`."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = self.key(*parts, path.relative_to(folder).as_posix())
            try:
                self.client.upload_file(str(path), self.name, key)
            except _s3_errors() as e:
                raise self._fail(e, f"{key} could not be written") from None

    def get_folder(self, folder: Path, *parts: str) -> None:
        """Every object under `parts`, into `folder` at the same relative paths."""
        prefix = self.key(*parts) + "/"
        try:
            for obj in self._objects(prefix):
                relative = str(obj["Key"])[len(prefix):]
                if not relative or relative.endswith("/") or ".." in relative.split("/"):
                    continue
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.name, str(obj["Key"]), str(target))
        except _s3_errors() as e:
            raise self._fail(e, f"{prefix} could not be read") from None

    def checksum(self, prefix: str) -> dict[str, Any]:
        """Objects, bytes and one sha256 over the key (after `prefix`), size and ETag of
        every object whose key starts with `prefix`."""
        digest = hashlib.sha256()
        files = size = 0
        try:
            for obj in sorted(self._objects(prefix), key=lambda o: str(o["Key"])):
                relative = str(obj["Key"])[len(prefix):]
                if relative.endswith("restore_config.json"):  # written by Weaviate on each restore
                    continue
                digest.update(f"{relative}\0{obj['Size']}\0{str(obj.get('ETag', '')).strip(chr(34))}\n".encode())
                files += 1
                size += int(obj["Size"])
        except _s3_errors() as e:
            raise self._fail(e, f"{prefix} could not be listed") from None
        return {"files": files, "bytes": size, "sha256": digest.hexdigest()}

    def delete(self, *parts: str) -> int:
        """Every object under `parts`; returns how many were deleted."""
        prefix = self.key(*parts) + "/"
        gone = 0
        try:
            keys = [str(o["Key"]) for o in self._objects(prefix)]
            for start in range(0, len(keys), 1000):
                chunk = keys[start:start + 1000]
                self.client.delete_objects(Bucket=self.name, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
                gone += len(chunk)
        except _s3_errors() as e:
            raise self._fail(e, f"{prefix} could not be deleted") from None
        return gone
