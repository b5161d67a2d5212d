"""A WebDAV folder (Nextcloud, ownCloud, a NAS, wsgidav, ...) as a source: its files and
those of its subfolders, listed folder by folder with PROPFIND (Depth: 1), fetched with
GET. A file's version is its ETag, else its last-modified date and length. The user is the
`username` option and the password the source's secret, sent with basic auth to the source's
host only (never after a redirect to another host).

A folder that cannot be listed (refused, a server error, no answer within the timeout) or
a listing past `max_files` makes the listing not complete, so the sync removes nothing.

Options: `username` (or `user`), `max_files` (10000), `timeout` (30 s).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

from memsys.ingest.sources.base import Listing, RemoteEntry, SourceProblem, SourceSpec, register, target_in
from memsys.ingest.sources.web import HostClient, scrubbed, shown

DAV = "{DAV:}"
MAX_PROPFIND_BYTES = 20 * 2**20
MAX_FOLDERS = 5000  # subfolders listed, at most: a server that nests folders without end is cut off
_PROPFIND = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getetag/><d:getlastmodified/><d:getcontentlength/></d:prop></d:propfind>"""


@register("webdav")
class WebDAVConnector:
    def __init__(self, spec: SourceSpec, secret: str | None = None) -> None:
        self.spec = spec
        self.secret = secret
        base = spec.location.strip()
        self.base = base if base.endswith("/") else base + "/"
        user = spec.option("username") or spec.option("user")
        if bool(user) != bool(secret):
            raise SourceProblem("a WebDAV source needs both a user and its password, or neither")
        raw = spec.option("max_files", "10000")
        if not raw.isdigit() or int(raw) < 1:
            raise SourceProblem(f"max_files is {raw!r}; it must be a whole number of at least 1")
        self.max_files = int(raw)
        self.client = HostClient(self.base, spec, auth=(user, secret) if user and secret else None)
        self.base_path = unquote(urlsplit(self.base).path)

    @property
    def calls(self) -> int:
        return self.client.calls

    def list(self) -> Listing:
        entries: list[RemoteEntry] = []
        folders = deque([self.base])
        seen = {self.base_path}
        try:
            while folders:
                folder = folders.popleft()
                for href, is_folder, props in self._propfind(folder):
                    path = unquote(urlsplit(urljoin(folder, href)).path)
                    if not path.startswith(self.base_path):
                        continue  # the server named something outside the source's folder
                    relative = path[len(self.base_path):].strip("/")
                    if not relative or path.rstrip("/") == unquote(urlsplit(folder).path).rstrip("/"):
                        continue  # the folder itself
                    if is_folder:
                        if len(seen) >= MAX_FOLDERS:
                            return Listing(tuple(entries), False, f"the folder holds more than {MAX_FOLDERS} subfolders")
                        if path not in seen:
                            seen.add(path)
                            folders.append(urljoin(self.base, quote(relative) + "/"))
                        continue
                    if not self.spec.wants(relative):
                        continue
                    if len(entries) >= self.max_files:
                        return Listing(tuple(entries), False, f"the folder holds more than {self.max_files} files "
                                       "(the source's max_files)")
                    etag = props.get("getetag", "")
                    length = props.get("getcontentlength", "")
                    version = f"etag:{etag}" if etag else f"modified:{props.get('getlastmodified', '')}:{length}"
                    entries.append(RemoteEntry(relative, version, int(length) if length.isdigit() else None))
        except SourceProblem as e:
            return Listing(tuple(entries), False, scrubbed(str(e), self.secret))
        return Listing(tuple(entries), True)

    def _propfind(self, folder: str) -> list[tuple[str, bool, dict[str, str]]]:
        name = f"the folder {shown(folder)}"
        r = self.client.request("PROPFIND", folder, headers={"Depth": "1", "Content-Type": "application/xml"},
                                content=_PROPFIND, limit=MAX_PROPFIND_BYTES, name=name)
        if r.status in (401, 403):
            raise SourceProblem(f"{name}: the server refused the user and password")
        if r.status != 207:
            raise SourceProblem(f"{name}: the server answered {r.status}")
        if b"<!DOCTYPE" in r.body or b"<!ENTITY" in r.body:
            raise SourceProblem(f"{name}: the server's answer declares entities; not read")
        try:
            root = ET.fromstring(r.body)
        except ET.ParseError:
            raise SourceProblem(f"{name}: the server's answer is not valid XML") from None
        found = []
        for response in root.iter(f"{DAV}response"):
            href = (response.findtext(f"{DAV}href") or "").strip()
            if not href:
                continue
            props: dict[str, str] = {}
            is_folder = False
            for propstat in response.iter(f"{DAV}propstat"):
                if " 200 " not in (propstat.findtext(f"{DAV}status") or " 200 "):
                    continue
                for prop in propstat.iter(f"{DAV}prop"):
                    for child in prop:
                        tag = child.tag.removeprefix(DAV)
                        if tag == "resourcetype":
                            is_folder = child.find(f"{DAV}collection") is not None
                        else:
                            props[tag] = (child.text or "").strip()
            found.append((href, is_folder, props))
        return found

    def fetch(self, entry: RemoteEntry, folder: Path) -> Path:
        if entry.size is not None and entry.size > self.client.limit:
            raise SourceProblem(f"{entry.key} is larger than the limit of {self.client.limit} bytes; not fetched")
        target = target_in(folder, entry.key)
        try:
            r = self.client.request("GET", urljoin(self.base, quote(entry.key)), target=target, name=entry.key)
        except SourceProblem as e:
            raise SourceProblem(scrubbed(str(e), self.secret)) from None
        if r.status != 200:
            target.unlink(missing_ok=True)
            raise SourceProblem(f"{entry.key}: the server answered {r.status}")
        return target

    def close(self) -> None:
        self.client.close()


__all__ = ["WebDAVConnector"]
