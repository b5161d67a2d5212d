"""An IMAP mailbox folder as a source: each message is a document `<folder>/<uid>.eml`, read
by the e-mail reader with its attachments. A message's version is `UIDVALIDITY:UID`: IMAP
never gives a message new content under the same UID, so a new mail is a new document and
a server that renumbers its folder (a new UIDVALIDITY) changes every version.

Location: `imaps://HOST[:PORT]/FOLDER` (TLS), or `imap://HOST[:PORT]/FOLDER` with STARTTLS;
plain IMAP without STARTTLS only on loopback or with the `plain` option (`plain=yes`). The
user is the `username` option and the password the source's secret (sent only after TLS unless
plain was chosen; never shown, logged or put in an error). The folder is opened read-only,
so a sync never marks mail as read.

Options: `username` (or `user`), `plain`, `timeout` (30 s), `max_messages` (10000).
"""
from __future__ import annotations

import imaplib
import ipaddress
import re
import socket
import ssl
from pathlib import Path
from urllib.parse import unquote, urlsplit

from memsys.ingest.sources.base import Listing, RemoteEntry, SourceProblem, SourceSpec, register, target_in
from memsys.ingest.sources.web import scrubbed, size_limit, timeout_of

_SIZE = re.compile(rb"UID (\d+).*RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*UID (\d+)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


@register("imap")
class IMAPConnector:
    def __init__(self, spec: SourceSpec, secret: str | None = None) -> None:
        self.spec = spec
        self.secret = secret
        parts = urlsplit(spec.location.strip())
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise SourceProblem("the location must be imaps://HOST/FOLDER or imap://HOST/FOLDER")
        if parts.username or parts.password:
            raise SourceProblem("the location must not hold a user name or password; give them as the source's user and secret")
        self.host = parts.hostname
        self.tls = parts.scheme == "imaps"
        self.port = parts.port or (993 if self.tls else 143)
        self.folder = unquote(parts.path.strip("/")) or "INBOX"
        self.plain = spec.option("plain").lower() in ("yes", "true", "1")
        self.user = spec.option("username") or spec.option("user")
        if not self.user or not secret:
            raise SourceProblem("an IMAP source needs a user and its password")
        raw = spec.option("max_messages", "10000")
        if not raw.isdigit() or int(raw) < 1:
            raise SourceProblem(f"max_messages is {raw!r}; it must be a whole number of at least 1")
        self.max_messages = int(raw)
        self.timeout = timeout_of(spec)
        self.limit = size_limit(spec)
        self.calls = 0
        self._imap: imaplib.IMAP4 | None = None
        self._uidvalidity = ""
        self._exists: int | None = None

    # -- the connection ---------------------------------------------------------------------
    def _problem(self, e: BaseException, what: str) -> SourceProblem:
        if isinstance(e, SourceProblem):
            return SourceProblem(scrubbed(str(e), self.secret))
        if isinstance(e, (socket.timeout, TimeoutError)):
            reason = f"the server did not answer within {self.timeout:g} seconds"
        elif isinstance(e, ssl.SSLError):
            reason = "the TLS connection failed (the server's certificate, or TLS not offered)"
        elif isinstance(e, OSError):
            reason = "the server could not be reached"
        elif isinstance(e, imaplib.IMAP4.error):
            reason = "the server refused: " + scrubbed(str(e), self.secret)[:200]
        else:
            reason = f"the mailbox could not be read ({type(e).__name__})"
        return SourceProblem(f"{what}: {reason}")

    def _connect(self) -> imaplib.IMAP4:
        if self._imap is not None:
            return self._imap
        self.calls += 1
        if self.tls:
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=ssl.create_default_context(), timeout=self.timeout)
        else:
            imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
            if "STARTTLS" in imap.capabilities:
                try:
                    imap.starttls(ssl.create_default_context())
                except BaseException:
                    imap.shutdown()
                    raise
            elif not (self.plain or _loopback(self.host)):
                imap.shutdown()
                raise SourceProblem("the server offers no TLS; memsys sends a password in plain only on loopback or with plain=yes")
        try:
            imap.login(self.user, self.secret or "")
        except imaplib.IMAP4.error:
            imap.shutdown()
            raise SourceProblem("the server refused the user and password") from None
        status, data = imap.select(_quoted(self.folder), readonly=True)
        if status != "OK":
            imap.logout()
            raise SourceProblem(f"the folder {self.folder!r} could not be opened")
        codes = imap.untagged_responses.get("UIDVALIDITY") or []
        self._uidvalidity = (codes[-1].decode() if codes and isinstance(codes[-1], bytes) else str(codes[-1] if codes else ""))
        self._exists = int(data[0]) if data and data[0] and str(data[0], "ascii", "replace").isdigit() else None
        self._imap = imap
        return imap

    # -- listing and fetching ----------------------------------------------------------------
    def list(self) -> Listing:
        try:
            imap = self._connect()
            if self._exists == 0:
                return Listing((), True)
            self.calls += 1
            status, data = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
            if status != "OK":
                raise SourceProblem(f"the folder {self.folder!r} could not be listed")
        except Exception as e:  # whatever went wrong, the sync removes nothing
            return Listing((), False, str(self._problem(e, f"the mailbox {self.folder}")))
        entries = []
        for line in data:
            raw = line[0] if isinstance(line, tuple) else line
            if not isinstance(raw, bytes):
                continue
            m = _SIZE.search(raw)
            if not m:
                continue
            uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            key = f"{self.folder}/{int(uid)}.eml"
            if self.spec.wants(key):
                entries.append(RemoteEntry(key, f"{self._uidvalidity}:{int(uid)}", int(size)))
        entries.sort(key=lambda e: int(e.key.rsplit("/", 1)[1].split(".")[0]))
        if len(entries) > self.max_messages:
            return Listing(tuple(entries[-self.max_messages:]), False,
                           f"the folder holds more than {self.max_messages} messages (the source's max_messages)")
        return Listing(tuple(entries), True)

    def fetch(self, entry: RemoteEntry, folder: Path) -> Path:
        if entry.size is not None and entry.size > self.limit:
            raise SourceProblem(f"{entry.key} is larger than the limit of {self.limit} bytes; not fetched")
        validity, _, uid = entry.version.partition(":")
        if not uid.isdigit():
            raise SourceProblem(f"{entry.key} has no message number")
        target = target_in(folder, entry.key)
        try:
            imap = self._connect()
            if validity != self._uidvalidity:
                raise SourceProblem(f"{entry.key}: the server renumbered the folder since it was listed; sync again")
            self.calls += 1
            # At most one byte past the limit, whatever size the listing said.
            status, data = imap.uid("FETCH", uid, f"(BODY.PEEK[]<0.{self.limit + 1}>)")
        except Exception as e:
            raise self._problem(e, entry.key) from None
        message = next((part[1] for part in data if isinstance(part, tuple) and len(part) > 1), None) if status == "OK" else None
        if not isinstance(message, bytes):
            raise SourceProblem(f"{entry.key} is no longer in the folder")
        if len(message) > self.limit:
            raise SourceProblem(f"{entry.key} is larger than the limit of {self.limit} bytes; not fetched")
        target.write_bytes(message)
        return target

    def close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            try:
                imap.logout()
            except Exception:
                pass


__all__ = ["IMAPConnector"]
