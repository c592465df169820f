"""rl4text label through a real server: a uvicorn process-in-a-thread that is stopped and restarted (the
annotators resume), and a headless Chromium (Debian's chromium + chromium-driver, driven by Selenium; nothing
is downloaded) that clicks through pairwise items and whose judgments are checked in the database."""

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from rl4text.label.app import create_app, serve_checks
from rl4text.label.project import new_project
from rl4text.label.store import Store

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``rl4text label serve`` in a thread (the same app and Host allow-list ``serve`` builds)."""

    def __init__(self, folder: Path, port: int):
        import uvicorn

        app = create_app(folder, allowed_hosts=serve_checks("127.0.0.1", port, None))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the label server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def project(tmp_path):
    start = [{"prompt": f"Translate: Satz {i}", "completion": f"start sentence {i}"} for i in range(4)]
    trained = [{"prompt": f"Translate: Satz {i}", "completion": f"trained sentence {i}"} for i in range(4)]
    trained[0]["completion"] = "<script>window.pwned = 1</script> trained sentence 0"
    files = [write_jsonl(tmp_path / "a.jsonl", start), write_jsonl(tmp_path / "b.jsonl", trained)]
    new_project(tmp_path / "proj", files, names=["start", "trained"], per_item=1)
    return tmp_path / "proj"


def test_restarted_server_resumes_each_annotator(project):
    port = free_port()
    with LiveServer(project, port) as live:
        first = httpx.get(f"{live.url}/api/next", params={"annotator": "ann"}).json()
        r = httpx.post(
            f"{live.url}/api/judgments", json={"item": first["item"], "annotator": "ann", "order": [0, 1]}
        )
        assert r.status_code == 200
        open_item = httpx.get(f"{live.url}/api/next", params={"annotator": "ann"}).json()["item"]
        other = httpx.get(f"{live.url}/api/next", params={"annotator": "bob"}).json()["item"]
        # DNS rebinding: a page on another name that resolves here is refused
        assert httpx.get(f"{live.url}/api/next", headers={"host": "evil.example"}).status_code == 400
    with LiveServer(project, port) as live:  # a new server process state on the same database
        again = httpx.get(f"{live.url}/api/next", params={"annotator": "ann"}).json()
        assert again["item"] == open_item and again["progress"]["judged"] == 1
        assert httpx.get(f"{live.url}/api/next", params={"annotator": "bob"}).json()["item"] == other
    assert [j["item"] for j in Store(project).judgments()] == [first["item"]]


def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,800",
    ):
        options.add_argument(flag)
    return options


needs_chromium = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; CI installs them)",
)


@needs_chromium
def test_headless_browser_clicks_through_pairwise_items(project, tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = browser()
    profile = tmp_path / "chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    store = Store(project)
    with LiveServer(project, free_port()) as live:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            driver.get(f"{live.url}/annotate?annotator=web")
            done, seen = [], []
            for step in range(4):
                app = driver.find_element(By.ID, "app")
                item = app.get_attribute("data-item")
                texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".candidate .text")]
                assert len(texts) == 2
                seen.extend(texts)
                # every text shows as text: the script in a completion is visible, and never ran
                assert driver.execute_script("return window.pwned === undefined")
                if step < 3:
                    driver.find_element(By.ID, "choose-1").click()  # "B is better"
                    expected = texts[1]
                else:
                    driver.find_element(By.TAG_NAME, "body").send_keys("t")  # keyboard shortcut: tie
                    expected = None
                WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
                    lambda d, n=step + 1: d.find_element(By.ID, "progress").text.startswith(f"{n} judged")
                )
                done.append((item, expected))
            assert "All done" in driver.find_element(By.ID, "done").text
            # the completion with a <script> was shown as its literal text
            assert any("<script>window.pwned = 1</script>" in t for t in seen)
        finally:
            driver.quit()
    items = store.items()
    stored = {j["item"]: j for j in store.judgments()}
    assert set(stored) == {i for i, _ in done}
    for item, expected in done:
        j = stored[item]
        if expected is None:
            assert j["tie"] is True
        else:
            best = items[item]["candidates"][j["ranking"][0]]["text"]
            assert best == expected and not j["tie"]  # the clicked text is the stored winner
        assert j["annotator"] == "web" and j["seconds"] is not None and j["seconds"] >= 0
    shutil.rmtree(profile, ignore_errors=True)
