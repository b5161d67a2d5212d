"""An S3-compatible bucket (AWS, versitygw, MinIO, ...) and a prefix in it as a source.

Location: `http(s)://HOST[:PORT]/BUCKET[/PREFIX]` (path-style, for a server of one's own) or
`s3://BUCKET[/PREFIX]` (AWS, with the `region` option). The access key id is the
`access_key_id` option (or the user name written in the location) and the secret key is
the source's secret (never shown, logged or put in an error). Objects are listed a page at a time (ListObjectsV2 with its continuation
token); an object's version is its ETag (it changes when the object is overwritten); one is
fetched by key, within the source's size limit.

A listing that stops part way (the server went away, refused a page, or did not answer
within the timeout) is not complete, so the sync removes nothing.

Options: `access_key_id`, `region` (us-east-1), `page_size` (1000), `timeout` (30 s).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from memsys.ingest.sources.base import Listing, RemoteEntry, SourceProblem, SourceSpec, copy_capped, register, target_in
from memsys.ingest.sources.web import scrubbed, size_limit, timeout_of
from memsys.lazy import caught_once_imported, lazy_module, lazy_names

if TYPE_CHECKING:
    import boto3
    import botocore
    from botocore.config import Config
else:  # imported on first use (memsys.lazy): only a sync of an S3 source loads the S3 client
    boto3, botocore = lazy_module("boto3"), lazy_module("botocore")
    (Config,) = lazy_names("botocore.config", "Config")
# The S3 client's errors, for except clauses and checks that do not import it.
_s3_errors = caught_once_imported("botocore.exceptions", "BotoCoreError", "ClientError")
_answered = caught_once_imported("botocore.exceptions", "ClientError")
_timed_out = caught_once_imported("botocore.exceptions", "ConnectTimeoutError", "ReadTimeoutError")
_unreached = caught_once_imported("botocore.exceptions", "EndpointConnectionError")

_PLAIN = {
    "AccessDenied": "the server refused access (check the access key and its permissions)",
    "InvalidAccessKeyId": "the server does not know this access key id",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the object is no longer there",
}


def parse_location(location: str) -> tuple[str | None, str, str]:
    """(endpoint URL or None for AWS, bucket, prefix) of a source's location."""
    parts = urlsplit(location.strip())
    if parts.scheme == "s3":
        bucket, prefix = parts.netloc, parts.path.lstrip("/")
        endpoint = None
    elif parts.scheme in ("http", "https") and parts.netloc:
        if "@" in parts.netloc:
            raise SourceProblem("the location must not hold a key; give it as the source's access key id and secret")
        bucket, _, prefix = parts.path.lstrip("/").partition("/")
        endpoint = f"{parts.scheme}://{parts.netloc}"
    else:
        raise SourceProblem("the location must be s3://BUCKET/PREFIX or http(s)://HOST/BUCKET/PREFIX")
    if not bucket:
        raise SourceProblem("the location names no bucket (s3://BUCKET/PREFIX or http(s)://HOST/BUCKET/PREFIX)")
    return endpoint, bucket, prefix


@register("s3")
class S3Connector:
    def __init__(self, spec: SourceSpec, secret: str | None = None) -> None:
        self.spec = spec
        self.endpoint, self.bucket, prefix = parse_location(spec.location)
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"  # a prefix is a folder
        self.secret = secret
        self.limit = size_limit(spec)
        self.timeout = timeout_of(spec)
        page_size = spec.option("page_size", "1000")
        if not page_size.isdigit() or not 1 <= int(page_size) <= 1000:
            raise SourceProblem(f"page_size is {page_size!r}; it must be a whole number from 1 to 1000")
        self.page_size = int(page_size)
        key_id = spec.option("access_key_id") or spec.option("username")  # http://KEY:SECRET@host/… saved as user and secret
        if bool(key_id) != bool(secret):
            raise SourceProblem("an S3 source needs both an access key id and its secret key, or neither (a public bucket)")
        config = Config(
            connect_timeout=self.timeout, read_timeout=self.timeout, retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"}, signature_version=None if secret else botocore.UNSIGNED,
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        self.calls = 0
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=spec.option("region", "us-east-1"),
            aws_access_key_id=key_id or None, aws_secret_access_key=secret or None, config=config,
        )
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, **_: object) -> None:
        self.calls += 1

    def _why(self, e: Exception, what: str) -> str:
        if isinstance(e, _answered()):
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            reason = _PLAIN.get(code) or f"the server answered {status or code or 'with an error'}"
        elif isinstance(e, _timed_out()):
            reason = f"the server did not answer within {self.timeout:g} seconds"
        elif isinstance(e, _unreached()):
            reason = "the server could not be reached"
        else:
            reason = f"the server could not be read ({type(e).__name__})"
        return scrubbed(f"{what}: {reason}", self.secret)

    def list(self) -> Listing:
        entries: list[RemoteEntry] = []
        token: str | None = None
        try:
            while True:
                kwargs = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": self.page_size}
                if token:
                    kwargs["ContinuationToken"] = token
                page = self.client.list_objects_v2(**kwargs)
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])[len(self.prefix):]
                    if not key or key.endswith("/") or not self.spec.wants(key):
                        continue  # the prefix itself, or a folder marker
                    version = str(obj.get("ETag", "")).strip('"') or str(obj.get("LastModified", ""))
                    entries.append(RemoteEntry(key, version, int(obj.get("Size", 0))))
                if not page.get("IsTruncated"):
                    break
                token = page.get("NextContinuationToken")
                if not token:
                    return Listing(tuple(entries), False, "the server said the listing goes on but gave no way to continue")
        except _s3_errors() as e:
            return Listing(tuple(entries), False, self._why(e, f"listing the bucket {self.bucket}"))
        return Listing(tuple(entries), True)

    def fetch(self, entry: RemoteEntry, folder: Path) -> Path:
        if entry.size is not None and entry.size > self.limit:
            raise SourceProblem(f"{entry.key} is larger than the limit of {self.limit} bytes; not fetched")
        target = target_in(folder, entry.key)
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.prefix + entry.key)
            if int(obj.get("ContentLength") or 0) > self.limit:
                obj["Body"].close()
                raise SourceProblem(f"{entry.key} is larger than the limit of {self.limit} bytes; not fetched")
            with obj["Body"] as body:
                return copy_capped(body, target, entry.key, self.limit)
        except _s3_errors() as e:
            target.unlink(missing_ok=True)
            raise SourceProblem(self._why(e, entry.key)) from None

    def close(self) -> None:
        self.client.close()


__all__ = ["S3Connector", "parse_location"]
