"""A website as a source: its pages by sitemap (a sitemap index too) or by following links
from a start page, on that one host only, as robots.txt allows, up to a page limit. Each
page is an HTML document (the HTML reader keeps its main content). Pages are asked for
with conditional GETs (If-None-Match / If-Modified-Since from the last sync, kept in a
small state file without secrets); a page's version is its ETag, else its Last-Modified,
else a hash of its content.

Links to files that are plainly not pages (.pdf, images, archives) are not followed, and a
page of another content type is not read.

The listing is not complete (the sync then removes nothing) when robots.txt, the start page
or a sitemap cannot be read, a page answers with a server error or not at all, or the
sitemaps go on past their cap (a loop of generated sitemaps). A site with more pages than
the page limit is its first `max_pages` pages (breadth first from the start page, or in
sitemap order), and the listing says so.

Options: `max_pages` (200), `max_sitemaps` (50), `timeout` (30 s).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zlib
from collections import deque
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from memsys.config import user_cache_dir
from memsys.ingest.sources.base import Listing, RemoteEntry, SourceProblem, SourceSpec, register, target_in
from memsys.ingest.sources.web import HostClient, OffHost, Response, shown, without_fragment

ROBOTS_AGENT = "memsys"
WORK_DIR_OPTION = "_work_dir"  # the source's own folder, set by the engine (as for git)
MAX_SITEMAP_BYTES = 10 * 2**20
HTML_TYPES = ("text/html", "application/xhtml+xml")


def _whole(spec: SourceSpec, name: str, default: int) -> int:
    raw = spec.option(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SourceProblem(f"{name} is {raw!r}; it must be a whole number of at least 1")
    return int(raw)


def page_key(url: str) -> str:
    """The document name of a page: its path on the host as an .html file name
    ('/' -> 'index.html', '/docs/' -> 'docs/index.html', '/a?x=1' -> 'a-q1a2b3c4d.html')."""
    parts = urlsplit(url)
    path = unquote(parts.path or "/")
    segments = [s for s in PurePosixPath("/" + path).parts[1:] if s not in ("", ".", "..")]
    if path.endswith("/") or not segments:
        segments.append("index.html")
    name = segments[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix.lower() not in ("html", "htm", "xhtml"):
        stem, suffix = name, "html"
    if parts.query:
        stem += "-q" + hashlib.sha256(parts.query.encode("utf-8")).hexdigest()[:8]
    segments[-1] = f"{stem}.{suffix}"
    return "/".join(re.sub(r"[\x00-\x1f\\]", "_", s) for s in segments)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.nofollow = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href") and "nofollow" not in (values.get("rel") or ""):
            self.links.append(values["href"] or "")
        elif tag == "meta" and (values.get("name") or "").lower() == "robots" and "nofollow" in (values.get("content") or "").lower():
            self.nofollow = True


def links_of(body: bytes, base: str) -> list[str]:
    parser = _Links()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
    except Exception:  # a broken page still lists the links found before the break
        pass
    if parser.nofollow:
        return []
    found = []
    for href in parser.links:
        url = without_fragment(urljoin(base, href.strip()))
        if urlsplit(url).scheme in ("http", "https"):
            found.append(url)
    return found


_NOT_PAGES = frozenset((
    ".pdf", ".zip", ".gz", ".tar", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js",
    ".mp3", ".mp4", ".webm", ".avi", ".mov", ".woff", ".woff2", ".ttf", ".exe", ".dmg", ".iso", ".docx", ".xlsx",
))


def _not_a_page(url: str) -> bool:
    """A link that is plainly not an HTML page (by its suffix): not asked for while crawling."""
    return PurePosixPath(urlsplit(url).path).suffix.lower() in _NOT_PAGES


def _sitemap_xml(body: bytes, name: str) -> bytes:
    """A sitemap's XML, gunzipped when it is a .xml.gz (at most MAX_SITEMAP_BYTES once unpacked)."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        xml = inflate.decompress(body, MAX_SITEMAP_BYTES + 1)
    except zlib.error:
        raise SourceProblem(f"{name} is not a valid gzip file") from None
    if len(xml) > MAX_SITEMAP_BYTES or inflate.unconsumed_tail:
        raise SourceProblem(f"{name} unpacks to more than {MAX_SITEMAP_BYTES} bytes; not read")
    return xml


def _version(response: Response) -> str:
    etag = response.headers.get("etag")
    if etag:
        return f"etag:{etag}"
    modified = response.headers.get("last-modified")
    if modified:
        return f"modified:{modified}"
    return "sha256:" + hashlib.sha256(response.body).hexdigest()


@register("website")
class WebsiteConnector:
    def __init__(self, spec: SourceSpec, secret: str | None = None) -> None:
        self.spec = spec
        self.max_pages = _whole(spec, "max_pages", 200)
        self.max_sitemaps = _whole(spec, "max_sitemaps", 50)
        self.start = without_fragment(spec.location.strip())
        self.client = HostClient(self.start, spec)
        self.sitemap_mode = spec.option("mode") == "sitemap" or (
            spec.option("mode") != "crawl" and urlsplit(self.start).path.lower().endswith((".xml", ".xml.gz")))
        # The engine gives each source a work folder (never a person: an option of theirs
        # names no place on the server); without one, the state is kept in the user's cache.
        state_dir = Path(spec.option(WORK_DIR_OPTION) or user_cache_dir() / "sources" / "website")
        self.state_file = state_dir / (hashlib.sha256(self.start.encode("utf-8")).hexdigest()[:24] + ".json")
        self._tmp = Path(tempfile.mkdtemp(prefix="memsys-website-"))
        self._fetched: dict[str, Path] = {}  # key -> page body read while listing
        self._urls: dict[str, str] = {}  # key -> URL
        self.conditional_hits = 0  # pages the server said were unchanged (304)

    # -- listing ---------------------------------------------------------------------------
    def list(self) -> Listing:
        state = self._load_state()
        new_state: dict[str, dict] = {}
        entries: dict[str, RemoteEntry] = {}
        problems: list[str] = []
        capped = ""  # the page limit was reached: the source is its first max_pages pages
        try:
            robots = self._robots()
            if self.sitemap_mode:
                urls, problem = self._sitemap_urls()
                if problem:
                    problems.append(problem)
                if len(urls) > self.max_pages:
                    capped = f"the sitemaps list more than {self.max_pages} pages (the source's page limit); the first {self.max_pages} are synced"
                    urls = urls[:self.max_pages]
                queue = deque(urls)
            else:
                queue = deque([self.start])
            seen = set(queue)
            if not self.sitemap_mode and not robots.can_fetch(ROBOTS_AGENT, self.start):
                raise SourceProblem(f"robots.txt does not allow memsys to read the start page {shown(self.start)}")
            while queue:
                url = queue.popleft()
                if not robots.can_fetch(ROBOTS_AGENT, url):
                    continue
                key = page_key(url)
                if not self.spec.wants(key) and self.sitemap_mode:
                    continue
                if len(new_state) >= self.max_pages:
                    capped = f"the website has more than {self.max_pages} pages (the source's page limit); the first {self.max_pages} are synced"
                    break
                page = self._page(url, state.get(url))
                if page is None:
                    if url == self.start and not self.sitemap_mode:
                        raise SourceProblem(f"the start page {shown(url)} is not there (or not an HTML page on this host)")
                    continue
                new_state[url] = page
                if self.spec.wants(key) and key not in entries:
                    entries[key] = RemoteEntry(key, page["version"], page.get("size"))
                    self._urls[key] = url
                if not self.sitemap_mode:
                    for link in page.get("links", ()):
                        if link not in seen and self.client.same_host(link) and not _not_a_page(link):
                            seen.add(link)
                            queue.append(link)
        except SourceProblem as e:
            problems.append(str(e))
        self._save_state({**state, **new_state} if problems else new_state)
        return Listing(tuple(entries.values()), complete=not problems, problem="; ".join(problems) or capped)

    def _robots(self) -> RobotFileParser:
        url = urljoin(self.start, "/robots.txt")
        robots = RobotFileParser(url)
        try:
            r = self.client.request("GET", url, limit=512 * 1024, name="robots.txt")
        except OffHost:  # kept elsewhere: unavailable to memsys, which then may read the site (RFC 9309)
            robots.parse([])
            return robots
        if r.status >= 500:
            raise SourceProblem(f"robots.txt answered {r.status}; the website was not read")
        robots.parse(r.body.decode("utf-8", errors="replace").splitlines() if r.status == 200 else [])
        return robots

    def _sitemap_urls(self) -> tuple[list[str], str]:
        urls: list[str] = []
        queue, seen = deque([self.start]), {self.start}
        read = 0
        while queue:
            sitemap = queue.popleft()
            if read >= self.max_sitemaps:
                return urls, (f"the sitemaps go on past {self.max_sitemaps} files (a loop, or too many)")
            read += 1
            r = self.client.request("GET", sitemap, limit=MAX_SITEMAP_BYTES, name=f"the sitemap {shown(sitemap)}")
            if r.status != 200:
                return urls, f"the sitemap {shown(sitemap)} answered {r.status}"
            body = _sitemap_xml(r.body, f"the sitemap {shown(sitemap)}")
            if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
                return urls, f"the sitemap {shown(sitemap)} declares entities; it was not read"
            try:
                root = ET.fromstring(body)
            except ET.ParseError:
                return urls, f"the sitemap {shown(sitemap)} is not valid XML"
            is_index = root.tag.rsplit("}", 1)[-1] == "sitemapindex"
            for loc in root.iter():
                if loc.tag.rsplit("}", 1)[-1] != "loc" or not (loc.text or "").strip():
                    continue
                url = without_fragment(urljoin(sitemap, loc.text.strip()))
                if not self.client.same_host(url):
                    continue
                if is_index:
                    if url not in seen:
                        seen.add(url)
                        queue.append(url)
                elif url not in urls:
                    urls.append(url)
                    if len(urls) > self.max_pages:
                        return urls, ""  # enough: the first max_pages are the source
        return urls, ""

    def _page(self, url: str, known: dict | None) -> dict | None:
        """One page, asked for conditionally when it was seen before: its state (version,
        validators, links), or None for a page that is not there or not HTML."""
        headers = {}
        if known and known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known and known.get("modified"):
            headers["If-Modified-Since"] = known["modified"]
        try:
            r = self.client.request("GET", url, headers=headers, name=shown(url), types=HTML_TYPES)
        except OffHost:
            return None  # the page moved to another host: it is no longer this website's
        if r.status == 304 and known:
            self.conditional_hits += 1
            return known
        if r.status in (404, 410) or (400 <= r.status < 500 and r.status not in (408, 429)):
            return None
        if r.status != 200:
            raise SourceProblem(f"the page {shown(url)} answered {r.status}")
        content_type = r.headers.get("content-type", "text/html").split(";")[0].strip().lower()
        if content_type not in HTML_TYPES:
            return None
        body_file = self._tmp / hashlib.sha256(url.encode("utf-8")).hexdigest()
        body_file.write_bytes(r.body)
        self._fetched[page_key(url)] = body_file
        return {
            "version": _version(r),
            "etag": r.headers.get("etag", ""),
            "modified": r.headers.get("last-modified", ""),
            "size": len(r.body),
            "links": links_of(r.body, r.url) if not self.sitemap_mode else [],
        }

    # -- state ------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, dict]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict[str, dict]) -> None:
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, self.state_file)
        except OSError:
            pass  # without the state file the next sync asks for every page in full

    # -- fetching ---------------------------------------------------------------------------
    def fetch(self, entry: RemoteEntry, folder: Path) -> Path:
        target = target_in(folder, entry.key)
        body = self._fetched.get(entry.key)
        if body is not None:
            shutil.copyfile(body, target)
            return target
        url = self._urls.get(entry.key)
        if url is None:
            raise SourceProblem(f"{entry.key} was not in the website's last listing")
        r = self.client.request("GET", url, target=target, name=entry.key)
        if r.status != 200:
            target.unlink(missing_ok=True)
            raise SourceProblem(f"{entry.key}: the page answered {r.status}")
        return target

    @property
    def calls(self) -> int:
        return self.client.calls

    def close(self) -> None:
        self.client.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


__all__ = ["WebsiteConnector", "links_of", "page_key"]
