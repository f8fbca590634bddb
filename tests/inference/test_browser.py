"""The web page end to end in a real headless Chromium (Debian's `chromium`, driven by Playwright
without a browser download of its own) against a real uvicorn server: drop a file that is not
media and see the error, upload a demo clip and see the result drawn; screenshot saved.

Runs in CI always (CI=true makes a missing browser a failure); elsewhere it skips, saying why,
only when Chromium or Playwright is absent. EMOFUSE_CHROMIUM points at another binary."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
import time
import urllib.request

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _chromium() -> str | None:
    env = os.environ.get("EMOFUSE_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = ("no Chromium binary (apt-get install chromium, or set EMOFUSE_CHROMIUM)" if exe is None
               else "playwright is not installed (pip install playwright; no `playwright install` needed)"
               if sync_playwright is None else None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(missing)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(predictor):
    """The app on a real uvicorn server in a thread, on a free local port."""
    import uvicorn

    from emofuse.inference.serve import create_app

    app = create_app(predictor=predictor, max_bytes=2_000_000, warm_up=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not t.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def test_page_end_to_end(browser, server, media, test_rows, tmp_path, screenshot_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server + "/")
    assert "fusion-attention" in page.inner_text("header")

    # a file that is not media, dropped on the drop zone: the page shows the server's reason
    payload = base64.b64encode(media["notmedia"].read_bytes()).decode()
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "video/mp4"}));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        [payload, "notes.mp4"],
    )
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "422" in page.inner_text("#error") and "not a readable media file" in page.inner_text("#error")
    page.screenshot(path=str(tmp_path / "serve-error.png"))
    shutil.copyfile(tmp_path / "serve-error.png", screenshot_dir / "serve-error.png")

    # a demo clip, chosen with the file input, with its transcript: the result is drawn
    page.set_input_files("#file", str(media["good"]))
    page.fill("#text", test_rows[0]["text"])  # media["good"] is that row's clip
    page.click("#submit")
    page.wait_for_selector("#result", state="visible", timeout=60_000)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')", timeout=60_000)
    assert not page.is_visible("#error")
    label = page.inner_text("#label").strip().lower()
    classes = page.eval_on_selector_all("#probs g", "gs => gs.map(g => g.dataset.name)")
    assert label in classes and len(classes) == 6
    probs = page.eval_on_selector_all("#probs g", "gs => gs.map(g => parseFloat(g.dataset.value))")
    assert abs(sum(probs) - 1) < 0.01 and classes[probs.index(max(probs))] == label
    bar_widths = page.eval_on_selector_all("#probs rect.bar", "rs => rs.map(r => parseFloat(r.getAttribute('width')))")
    assert max(bar_widths) > 100  # the winning bar is drawn, not just listed
    assert page.eval_on_selector_all("#weights g", "gs => gs.map(g => g.dataset.name)") == ["audio", "text", "video"]
    faces = page.eval_on_selector_all("#faces figure.face img", "is => is.map(i => i.naturalWidth)")
    assert len(faces) >= 1 and all(w == 96 for w in faces)  # the face crops were decoded and shown

    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    stable = screenshot_dir / "serve.png"
    shutil.copyfile(shot, stable)
    print(f"screenshot: {stable}")

    # the server kept answering throughout
    with urllib.request.urlopen(server + "/health") as r:
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    page.close()
