"""Real servers on 127.0.0.1 for the remote kinds of source, started by the tests
(tests/test_source_kinds.py, tests/test_source_sync_remote.py) and the benchmark
(bench/remote_sources.py): versitygw
(S3 over a folder), Dovecot (IMAP, its own config in a temporary folder), wsgidav (WebDAV)
and a small website (http.server) that counts requests and conditional hits. Fault
injection only: a socket that accepts and never answers, a path that fails on demand.
Each server is stopped by its own PID / process group (never by name).
"""
from __future__ import annotations

import email.utils
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tools.install_versitygw import versitygw_binary  # noqa: E402

S3_ACCESS_KEY = "memsys-test-key"
SENTINEL = "Sentinel-Secret-7f3a9c"  # every source password in these tests: grep for it


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(what: str, how: str) -> None:
    """A server that is needed is not installed: under pytest, fail under CI and skip
    elsewhere; otherwise (the benchmark) raise."""
    message = f"{what} is not installed ({how})"
    if "pytest" not in sys.modules:
        raise RuntimeError(message)
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Process:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.log = log
        out = log.open("ab") if log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]  # the child has its own copy

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


# -- S3: versitygw --------------------------------------------------------------------------
class VersityGW:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = versitygw_binary()
        if not binary.is_file():
            missing("versitygw", "make test builds it: python tools/install_versitygw.py")
        self.folder = folder
        self.port = port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            [str(binary), "--port", f"127.0.0.1:{self.port}", "posix", str(folder)],
            env={"ROOT_ACCESS_KEY": S3_ACCESS_KEY, "ROOT_SECRET_KEY": SENTINEL},
            log=folder.parent / f"versitygw-{self.port}.log",
        )
        wait_until(lambda: port_open(self.port) or self.process.proc.poll() is not None, what="versitygw listening")
        assert self.process.proc.poll() is None, (folder.parent / f"versitygw-{self.port}.log").read_text()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_ACCESS_KEY,
                            aws_secret_access_key=SENTINEL, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def stop(self) -> None:
        self.process.stop()


# -- IMAP: Dovecot --------------------------------------------------------------------------
DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = memsys-test-{port}
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
log_path = {base}/dovecot.log
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = {base}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


class Dovecot:
    """Dovecot's IMAP server with a config of its own in a temporary folder: one user
    (`user`, password SENTINEL) whose maildir is in that folder. As root, the login and
    internal processes run as the package's own users (dovenull, dovecot) and the mail as
    dovecot; as another user, everything runs as that user."""

    user = "tester"

    def __init__(self, tls: bool = False) -> None:
        binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").is_file() else None)
        if binary is None:
            missing("Dovecot", "make test installs dovecot-imapd: tools/install_system_packages.sh")
        # Not under pytest's 0700 temporary folders: the unprivileged login process must reach its sockets.
        self.base = Path(tempfile.mkdtemp(prefix="memsys-dovecot-"))
        self.base.chmod(0o755)
        self.port = free_port()
        self.imaps_port = free_port() if tls else 0
        ssl = "ssl = no"
        if tls:  # a certificate of a CA of the test's own, for 127.0.0.1: trust it with SSL_CERT_FILE
            self.ca_file = self.base / "ca.pem"
            make_certificate(self.base, self.ca_file)
            ssl = f"ssl = yes\nssl_cert = <{self.base}/cert.pem\nssl_key = <{self.base}/key.pem"
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:
            mail = pwd.getpwnam("dovecot")
            login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
            uid, gid = mail.pw_uid, mail.pw_gid
        else:
            login_user = internal_user = me.pw_name
            internal_group = me.pw_name
            uid, gid = me.pw_uid, me.pw_gid
        home = self.base / "mail" / self.user
        home.mkdir(parents=True)
        for path in (self.base / "mail", home):
            os.chown(path, uid, gid)
        (self.base / "state").mkdir()
        (self.base / "passwd").write_text(f"{self.user}:{{PLAIN}}{SENTINEL}:{uid}:{gid}::{home}::\n")
        (self.base / "dovecot.conf").write_text(DOVECOT_CONF.format(
            base=self.base, port=self.port, imaps_port=self.imaps_port, ssl=ssl, uid=uid, login_user=login_user,
            internal_user=internal_user, internal_group=internal_group))
        self.process = Process([binary, "-F", "-c", str(self.base / "dovecot.conf")], log=self.base / "stdout.log")
        wait_until(lambda: port_open(self.port) or self.process.proc.poll() is not None, what="dovecot listening")
        assert self.process.proc.poll() is None, (self.base / "stdout.log").read_text()

    def location(self, folder: str = "INBOX", scheme: str = "imap") -> str:
        return f"{scheme}://127.0.0.1:{self.imaps_port if scheme == 'imaps' else self.port}/{folder}"

    def append(self, message: bytes, folder: str = "INBOX") -> int:
        """Deliver a message by APPEND; its UID."""
        import imaplib

        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            imap.login(self.user, SENTINEL)
            status, data = imap.append(folder, None, None, message)
            assert status == "OK", data
            return int(data[0].split(b"]")[0].split()[-1])  # [APPENDUID validity uid]
        finally:
            imap.logout()

    def log_text(self) -> str:
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def make_certificate(folder: Path, ca_file: Path) -> None:
    """A CA (its certificate in `ca_file`) and a server certificate for 127.0.0.1 signed by
    it (folder/cert.pem, folder/key.pem), with openssl."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", str(ca_file),
        "-days", "2", "-subj", "/CN=memsys test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", str(ca_file), "-CAkey", "ca-key.pem", "-CAcreateserial",
        "-out", "cert.pem", "-days", "2", "-extfile", "san.ext")
    for name in ("key.pem", "ca-key.pem"):
        (folder / name).chmod(0o600)


def mail(subject: str, body: str, attachment: tuple[str, bytes] | None = None) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "support@example.com"
    message["To"] = "team@example.com"
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(email.utils.localtime())
    message.set_content(body)
    if attachment:
        message.add_attachment(attachment[1], maintype="text", subtype="plain", filename=attachment[0])
    return message.as_bytes()


# -- WebDAV: wsgidav ------------------------------------------------------------------------
class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class WebDAV:
    """wsgidav over `folder`, user `user` with password SENTINEL, in a thread of this
    process; `fail_paths` answer 500 (a fault injected around the real server)."""

    user = "alice"

    def __init__(self, folder: Path) -> None:
        from wsgidav.wsgidav_app import WsgiDAVApp

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.fail_paths: set[str] = set()
        self.redirect_paths: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        app = WsgiDAVApp({
            "host": "127.0.0.1", "port": self.port,
            "provider_mapping": {"/dav": str(folder)},
            "simple_dc": {"user_mapping": {"*": {self.user: {"password": SENTINEL}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 0, "logging": {"enable": False}, "property_manager": True, "lock_storage": True,
        })

        def faulty(environ, start_response):  # type: ignore[no-untyped-def]
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
            if environ.get("PATH_INFO", "").rstrip("/") in self.redirect_paths:
                start_response("301 Moved Permanently", [("Location", self.redirect_paths[environ["PATH_INFO"].rstrip("/")])])
                return [b""]
            if environ.get("PATH_INFO", "").rstrip("/") in self.fail_paths:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"injected failure"]
            return app(environ, start_response)

        self.server = make_server("127.0.0.1", self.port, faulty, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def location(self) -> str:
        return f"http://127.0.0.1:{self.port}/dav/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- a website: http.server -----------------------------------------------------------------
@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    etag: bool = True  # send an ETag (else only Last-Modified)
    modified: float = field(default_factory=time.time)


class Website:
    """Pages served from a dict on 127.0.0.1: ETag or Last-Modified on each, conditional
    GETs answered 304 (counted), `fail` paths answer 500, `redirect` paths redirect."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.fail: set[str] = set()
        self.redirect: dict[str, str] = {}
        self.hits: list[tuple[str, str]] = []  # (Host header, path) of every request
        self.not_modified = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append((self.headers.get("Host", ""), self.path))
                if self.path in site.fail:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in site.redirect:
                    self.send_response(302)
                    self.send_header("Location", site.redirect[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                page = site.pages.get(self.path)
                if page is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"' if page.etag else None
                modified = email.utils.formatdate(page.modified, usegmt=True)
                unchanged = (etag is not None and self.headers.get("If-None-Match") == etag) or (
                    etag is None and self.headers.get("If-Modified-Since") == modified)
                if unchanged:
                    site.not_modified += 1
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", page.content_type)
                self.send_header("Content-Length", str(len(page.body)))
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Last-Modified", modified)
                self.end_headers()
                self.wfile.write(page.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def page_hits(self, path: str) -> int:
        return sum(1 for _, p in self.hits if p == path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def html(title: str, text: str, links: tuple[str, ...] = ()) -> bytes:
    anchors = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (f"<html><head><title>{title}</title></head><body><nav><ul>{anchors}</ul></nav>"
            f"<main><h1>{title}</h1><p>{text}</p></main><footer>Site footer</footer></body></html>").encode()


# -- a server that hangs --------------------------------------------------------------------
class HangingServer:
    """Accepts connections and never answers (nor closes them until stopped)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except OSError:
                continue

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()
