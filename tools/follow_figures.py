"""Figures for "imports people can follow", measured in Chromium against a dashboard
served from a source tree (this one by default, or an older checkout to compare):

- seconds from a click on Start to the first moving progress on screen;
- Cancel: seconds from the click to the page saying the import is cancelled, and the
  memories written after the click (the store's count then minus at the click);

on 95 memories of 1-2 KB (25 a batch, the batch settings' default for texts that long)
with the local embedder, in 5 files plus a broken PDF. Screenshots go to --shots.

    PYTHONPATH=. .venv/bin/python tools/follow_figures.py --shots /work/shots/follow --label after
    PYTHONPATH=. .venv/bin/python tools/follow_figures.py --tree /tmp/base --label before
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

HERE = Path(__file__).resolve().parent.parent
WORDS = """
time year people way day man thing woman life child world school state family student group country
problem hand part place case week company system program question work government number night point
home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community
name president team minute idea kid body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy music market sense nation plan college interest death
experience effect class control care field development role effort rate heart drug show leader light
voice wife police mind price report decision son view relationship town road arm difference value
building action model season society tax director position player record paper space ground form
event official matter center couple site project activity star table need court oil situation cost
industry figure street image phone data picture practice piece land product doctor wall patient
worker news test movie north love support technology step baby computer type attention film tree
source organization hair window evidence population site
""".split()


class _Done(Exception):
    """The figures asked for are measured: the rest of the walk is skipped."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def passage(i: int) -> str:
    """About 1.1 KB of English words (one chunk, 25 to a batch), different for every i."""
    pick = random.Random(i)
    words = [pick.choice(WORDS) for _ in range(165)]
    return f"Passage {i} of the field notes. " + " ".join(
        " ".join(words[j:j + 11]).capitalize() + "." for j in range(0, len(words), 11))


def corpus(folder: Path, files: int = 5, rows: int = 19) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        path = folder / f"notes-{f + 1}.jsonl"
        path.write_text("".join(json.dumps({"content": passage(f * rows + r)}) + "\n" for r in range(rows)), encoding="utf-8")
        paths.append(path)
    broken = folder / "broken-scan.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> damaged beyond reading")
    return [*paths, broken]


def count_memories(env: dict[str, str]) -> int:
    """How many memories the dashboard's store holds, through a client of our own."""
    from memsys import Settings
    from memsys.store import server as memsys_server

    settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
    client, _ = memsys_server.connect_client(settings, start=False)
    try:
        result = client.collections.get("Memory").aggregate.over_all(total_count=True)
        return int(result.total_count or 0)
    finally:
        client.close()
        memsys_server.release_client(settings)


def settle(page: Page) -> None:
    expect(page.locator("[data-testid='stApp'][data-test-script-state='notRunning']")).to_have_count(1, timeout=180_000)


def shoot(page: Page, shots: Path, name: str) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def progress_text(page: Page) -> str:
    bar = page.get_by_test_id("stProgress")
    return bar.first.inner_text() if bar.count() else ""


def moved(text: str) -> bool:
    """The progress says something was done: a count above zero stored, or embedded."""
    if "embedded" in text:
        return True
    match = re.search(r"([\d,]+) (?:of [\d,]+|memor)", text)
    return bool(match and int(match.group(1).replace(",", "")) > 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=HERE, help="the source tree whose dashboard is measured")
    parser.add_argument("--shots", type=Path, default=Path("/work/shots/follow"))
    parser.add_argument("--label", default="after", help="prefix of the screenshots' names")
    parser.add_argument("--cancel-after", type=float, default=5.0, help="seconds after Start to click Cancel")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="stop after the Cancel figures (no Resume, Home or Imports screenshots)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"follow-{args.label}-"))
    files = corpus(work / "files")
    env = {"MEMSYS_DATA_DIR": str(work / "data"), "MEMSYS_WEAVIATE_PORT": str(free_port()),
           "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "MEMSYS_EMBEDDING_PROVIDER": "local",
           "MEMSYS_SERVER_IDLE_SECONDS": "60"}
    port = free_port()
    full_env = {**os.environ, **env, "PYTHONPATH": str(args.tree), "NO_PROXY": "127.0.0.1,localhost"}
    log = (work / "streamlit.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "components.serve", "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true"],
                            cwd=str(args.tree), env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    figures: dict[str, float | str] = {"tree": str(args.tree), "load_average_1min": round(os.getloadavg()[0], 1)}
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        token_file = Path(env["MEMSYS_DATA_DIR"]) / "dashboard_token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        base = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/?token={token}" if token else base)
            expect(page.get_by_text("Cached vectors")).to_be_visible(timeout=180_000)
            page.goto(f"{base}/import")
            settle(page)
            page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([str(f) for f in files])
            expect(page.get_by_role("button", name="Remove", exact=True)).to_have_count(len(files), timeout=60_000)
            settle(page)
            for label, value in (("Project", "fieldnotes"), ("Repo", "notes"), ("Agent", "bench")):
                field = page.get_by_label(label, exact=True)
                if field.count():  # the form of this tree names them so
                    field.fill(value)
                    page.keyboard.press("Enter")
                    settle(page)
            start_button = page.get_by_role("button", name="Start import")
            start_button.scroll_into_view_if_needed()
            started = time.monotonic()
            start_button.click()
            first_move = None
            while time.monotonic() - started < 180:
                if moved(progress_text(page)):
                    first_move = time.monotonic() - started
                    break
                time.sleep(0.1)
            figures["start_to_first_moving_progress_s"] = round(first_move, 1) if first_move is not None else "never"
            in_view = page.evaluate("() => { const b = document.querySelector('[data-testid=stProgress]');"
                                    " if (!b) return false; const r = b.getBoundingClientRect();"
                                    " return r.top >= 0 && r.bottom <= window.innerHeight; }")
            figures["progress_in_view_after_start"] = "yes" if in_view else "no"
            shoot(page, args.shots, f"{args.label}-import-running")
            left = args.cancel_after - (time.monotonic() - started)
            if left > 0:
                time.sleep(left)
            cancel = page.get_by_role("button", name="Cancel")
            at_click_count = count_memories(env)
            clicked = time.monotonic()
            cancel.click()
            shoot(page, args.shots, f"{args.label}-import-stopping")
            # A Cancel that only acts after every batch in flight may come too late: the
            # import then finishes, which is what the page says.
            ended = page.get_by_text(re.compile("Import cancelled|Import finished"))
            expect(ended.first).to_be_visible(timeout=600_000)
            figures["cancel_click_to_stopped_s"] = round(time.monotonic() - clicked, 1)
            at_stop = count_memories(env)
            figures["memories_at_click"] = at_click_count
            figures["memories_written_after_click"] = at_stop - at_click_count
            figures["cancel_message"] = ended.first.inner_text()
            print(json.dumps(figures), file=sys.stderr, flush=True)
            shoot(page, args.shots, f"{args.label}-import-cancelled")
            resume = page.get_by_role("button", name="Resume")
            if args.resume and resume.count():
                resume.click()
            if not args.resume:
                browser.close()
                raise _Done
            expect(page.get_by_text(re.compile("Import finished"))).to_be_visible(timeout=600_000)
            settle(page)
            figures["after_resume_memories"] = count_memories(env)
            figures["finished_message"] = page.get_by_text(re.compile("Import finished")).first.inner_text()
            shoot(page, args.shots, f"{args.label}-import-finished")
            page.goto(base)
            expect(page.get_by_text("Cached vectors")).to_be_visible(timeout=60_000)
            settle(page)
            shoot(page, args.shots, f"{args.label}-home")
            failed_link = page.get_by_text(re.compile("see why and retry"))
            if failed_link.count():
                failed_link.first.click()
                settle(page)
                time.sleep(1)
                shoot(page, args.shots, f"{args.label}-home-failed-link")
            page.goto(f"{base}/imports")
            settle(page)
            shoot(page, args.shots, f"{args.label}-imports")
            browser.close()
    except _Done:
        pass
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "memsys", "server", "stop"], cwd=str(args.tree), env=full_env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
        log.close()
    print(json.dumps(figures, indent=2))
    shutil.rmtree(work / "files", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
