"""The web console in a real browser (Debian's headless Chromium driven by Selenium) against a real daemon with the
tiny model on the built-in engine, plus its serving rules over plain HTTP. Every wait is on the page's DOM (or a
reply), bounded by PATIENCE; any error in the browser's console log fails the test. The views are photographed at
1280x800 into docs/console/ (committed, shown in docs/console.md)."""

import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import PATIENCE, ROOT, TINY_MODEL, Daemon, call, hub_env, start_tiny_run

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
# The screenshots docs/console.md shows are made here: `MODELD_SCREENSHOTS=docs/console python3 -m pytest
# Tests/Hostile/test_console.py` writes them there; otherwise they go to a scratch folder, so a test run leaves the
# work tree as it was.
SCREENSHOTS = Path(os.environ.get("MODELD_SCREENSHOTS") or tempfile.mkdtemp(prefix="modeld-screenshots."))
VIEWS = ["status", "runs", "versions", "models", "keys", "playground"]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def console_daemon(workdir, hub):
    """A daemon of its own (the key test creates keys): the tiny model adopted, a ready run `tiny`."""
    server = Daemon(workdir / "console", extra_env=hub_env(hub))
    try:
        start_tiny_run(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_script_timeout(PATIENCE)
    yield driver
    driver.quit()


def resize(driver, size):
    width, height = SIZES[size]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"})


def wait_for(driver, script, *args, message="the page did not get there"):
    """Waits until the script returns something truthy; returns it."""
    return WebDriverWait(driver, PATIENCE, poll_frequency=0.05).until(lambda d: d.execute_script(script, *args), message)


def text_of(driver, selector):
    return wait_for(driver, "const e = document.querySelector(arguments[0]); return e && e.textContent.trim()", selector,
                    message=f"no text at {selector}")


def state_of_row(driver, name):
    return driver.execute_script(
        "const row = document.querySelector(`#runs-table tr[data-name='${arguments[0]}']`);"
        "return row ? row.querySelector('[data-state]').dataset.state : null", name)


def open_view(driver, daemon, view):
    if not driver.current_url.startswith(f"http://127.0.0.1:{daemon.port}/"):
        driver.get(f"http://127.0.0.1:{daemon.port}/")
    driver.execute_script("location.hash = arguments[0]", view)
    wait_for(driver, "return document.getElementById('view').dataset.view === arguments[0]", view)


def assert_no_horizontal_scroll(driver, where):
    widths = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where}: the page scrolls sideways (scrollWidth {widths[0]} > {widths[1]})"


def browser_errors(driver, expected=()):
    """The console log's errors since the last call, but those matching an `expected` pattern."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not any(re.search(pattern, entry["message"]) for pattern in expected)]


def test_serving_rules(console_daemon):
    port = console_daemon.port
    status, headers, body = call(port, "GET", "/", headers={"Accept": "*/*"})
    assert (status, body, headers["Content-Type"]) == (200, b"modeld is running\n", "text/plain; charset=utf-8")
    # HEAD / sends what GET / would, Content-Length included, without the body.
    for accept in ("*/*", "text/html"):
        _, got, body = call(port, "GET", "/", headers={"Accept": accept})
        status, headers, empty = call(port, "HEAD", "/", headers={"Accept": accept})
        assert (status, empty) == (200, b"") and headers["Content-Length"] == str(len(body)), accept
        assert {name: value for name, value in headers.items() if name not in ("Date", "X-Request-Id")} == \
            {name: value for name, value in got.items() if name not in ("Date", "X-Request-Id")}, accept

    accept_html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    status, headers, page = call(port, "GET", "/", headers=accept_html)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="/ui/app.js">' in page and b"<script>" not in page
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["ETag"] == f'"{hashlib.sha256(page).hexdigest()}"'
    assert headers["Cache-Control"] == "no-cache"
    status, headers, body = call(port, "GET", "/", headers={**accept_html, "If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")

    for path, content_type in [("/ui/app.css", "text/css"), ("/ui/app.js", "text/javascript"),
                               ("/ui/views/runs.js", "text/javascript")]:
        status, plain_headers, plain = call(port, "GET", path)
        assert status == 200 and plain_headers["Content-Type"] == f"{content_type}; charset=utf-8", path
        assert "Content-Encoding" not in plain_headers
        assert plain_headers["ETag"] == f'"{hashlib.sha256(plain).hexdigest()}"'
        assert plain_headers["Content-Security-Policy"] == CSP and plain_headers["X-Content-Type-Options"] == "nosniff"
        assert plain == (ROOT / "console" / path.removeprefix("/ui/")).read_bytes(), f"{path} is not the file in console/"
        status, packed_headers, packed = call(port, "GET", path, headers={"Accept-Encoding": "gzip, br"})
        assert status == 200 and packed_headers["Content-Encoding"] == "gzip" and packed_headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(packed) == plain and len(packed) < len(plain), path
        assert call(port, "GET", path, headers={"If-None-Match": f'W/{plain_headers["ETag"]}'})[0] == 304

    assert call(port, "GET", "/ui/index.html")[0] == 404
    assert call(port, "GET", "/ui/nosuch.js")[0] == 404
    assert call(port, "GET", "/ui/views/..%2Fapp.js")[0] == 404
    # The origin and host checks apply to the console too.
    assert call(port, "GET", "/", headers={**accept_html, "Origin": "http://evil.test"})[0] == 403
    assert call(port, "GET", "/ui/app.js", headers={"Host": "rebound.evil.test"})[0] == 403


@pytest.mark.parametrize("size", SIZES)
def test_every_view_at_both_sizes(console_daemon, browser, size):
    resize(browser, size)
    browser.get(f"http://127.0.0.1:{console_daemon.port}/")
    _, _, health = call(console_daemon.port, "GET", "/health")
    assert text_of(browser, "#status-version .stat") == json.loads(health)["version"]
    assert text_of(browser, "#status-runs .hint") == "1 ready"
    wait_for(browser, "return document.getElementById('live').textContent === 'live'")
    assert browser.execute_script("return [innerWidth, innerHeight]") == list(SIZES[size])
    ready = {
        "status": "return document.querySelector('#status-tokens')",
        "runs": "return document.querySelector(\"#runs-table tr[data-name='tiny'] [data-state='ready']\")",
        "versions": "return document.querySelector(\"#versions-table tr[data-repo='acme/qwen2-tiny'] [data-state='ready']\")",
        "models": "return document.querySelectorAll('#catalog article').length > 3",
        "keys": "return document.querySelector('#keys-table p, #keys-table table')",
        "playground": "return document.querySelector('#chat-form [name=model]').value === 'tiny'",
    }
    for view in VIEWS:
        open_view(browser, console_daemon, view)
        wait_for(browser, ready[view], message=f"the {view} view did not show its data")
        assert_no_horizontal_scroll(browser, f"{view} at {size}")
        if size == "desktop":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(SCREENSHOTS / f"{view}.png"))
    if size == "phone":
        open_view(browser, console_daemon, "runs")
        wait_for(browser, ready["runs"])
        browser.save_screenshot(str(SCREENSHOTS / "runs-phone.png"))
    else:
        # The dark theme follows the system's setting.
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        open_view(browser, console_daemon, "status")
        wait_for(browser, ready["status"])
        assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(18, 20, 23)"
        browser.save_screenshot(str(SCREENSHOTS / "status-dark.png"))
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert browser_errors(browser) == []


def test_runs_follow_the_event_stream(console_daemon, browser):
    resize(browser, "desktop")
    browser.get(f"http://127.0.0.1:{console_daemon.port}/#runs")
    wait_for(browser, "return document.getElementById('live').textContent === 'live'")
    browser.execute_script("window.notReloaded = true")
    status, _, body = call(console_daemon.port, "POST", "/api/v1/models/start",
                           {"model": "acme/qwen2-tiny", "engine": "builtin", "name": "second"})
    assert status == 200, body
    WebDriverWait(browser, PATIENCE, 0.05).until(lambda d: state_of_row(d, "second") == "ready", "run second never showed ready")
    status, _, body = call(console_daemon.port, "POST", "/api/v1/models/running/second/stop")
    assert status == 200, body
    WebDriverWait(browser, PATIENCE, 0.05).until(lambda d: state_of_row(d, "second") in ("stopped", None),
                                                 "the stop of run second never showed")
    assert browser.execute_script("return window.notReloaded") is True, "the page was reloaded"

    # The log view follows the run's log as it grows.
    browser.find_element(By.CSS_SELECTOR, "#runs-table tr[data-name='tiny'] button").click()
    wait_for(browser, "return document.getElementById('log-output')?.textContent.includes('\\n')")
    assert browser_errors(browser) == []


def test_local_versions_verify_and_confirm_removal(console_daemon, browser):
    open_view(browser, console_daemon, "versions")
    row = "#versions-table tr[data-repo='acme/qwen2-tiny']"
    wait_for(browser, f"return document.querySelector(\"{row}\")")
    browser.find_element(By.CSS_SELECTOR, f"{row} td.actions button").click()
    shown = wait_for(browser, "const t = document.getElementById('versions-message').textContent;"
                              "return /intact|damaged|failed/.test(t) && t")
    status, _, body = call(console_daemon.port, "POST", "/api/v1/models/verify", {"model": "acme/qwen2-tiny"})
    assert status == 200, body
    result = json.loads(body)["data"][0]
    assert shown.startswith(f"acme/qwen2-tiny: {'intact' if result['intact'] else 'damaged'}")
    assert f"{result['files_checked']} files" in shown or not result["intact"]

    # Remove asks first; cancelling keeps the version.
    browser.find_element(By.CSS_SELECTOR, f"{row} button.danger").click()
    wait_for(browser, "return document.getElementById('confirm-dialog').open")
    assert "acme/qwen2-tiny" in browser.find_element(By.ID, "confirm-text").text
    browser.find_element(By.ID, "confirm-cancel").click()
    wait_for(browser, "return !document.getElementById('confirm-dialog').open")
    status, _, body = call(console_daemon.port, "GET", "/api/v1/models/local")
    assert [version["repo"] for version in json.loads(body)["data"]] == ["acme/qwen2-tiny"]
    assert browser_errors(browser) == []


def test_local_version_exported_through_the_page(console_daemon, browser, tmp_path):
    """Export fetches the archive with the key in a header and saves it from a Blob: the file equals the API's."""
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    open_view(browser, console_daemon, "versions")
    row = "#versions-table tr[data-repo='acme/qwen2-tiny']"
    wait_for(browser, f"return document.querySelector(\"{row}\")")
    browser.find_element(By.CSS_SELECTOR, f"{row} button.export").click()
    shown = wait_for(browser, "const t = document.getElementById('versions-message').textContent;"
                              "return /Exported|failed/.test(t) && t")
    _, _, body = call(console_daemon.port, "GET", "/api/v1/models/local")
    version = json.loads(body)["data"][0]
    status, headers, archive = call(
        console_daemon.port, "GET", f"/api/v1/models/acme%2Fqwen2-tiny/export?source={version['source']}&revision={version['commit']}")
    assert status == 200 and archive
    name = re.search(r'filename="([^"]+)"', headers["Content-Disposition"]).group(1)
    assert shown.endswith(f"as {name}."), shown
    saved = tmp_path / name
    WebDriverWait(browser, PATIENCE, 0.05).until(
        lambda _: saved.exists() and saved.stat().st_size == len(archive), f"{name} was not saved in full")
    assert saved.read_bytes() == archive
    assert browser_errors(browser) == []


def test_playground_streams_the_engines_reply(console_daemon, browser):
    open_view(browser, console_daemon, "playground")
    wait_for(browser, "return document.querySelector('#chat-form [name=model]').value === 'tiny'")
    form = browser.find_element(By.ID, "chat-form")
    for name, value in (("temperature", "0"), ("max_tokens", "12")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    form.find_element(By.NAME, "ignore_eos").click()
    form.find_element(By.NAME, "prompt").send_keys("Hello")
    form.find_element(By.ID, "chat-send").click()
    wait_for(browser, "return document.querySelector('#chat .assistant')?.dataset.state === 'done'")
    shown = browser.execute_script("return document.querySelector('#chat .assistant').textContent")
    status, _, body = call(console_daemon.port, "POST", "/v1/chat/completions", {
        "model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "temperature": 0, "top_p": 1, "max_tokens": 12,
        "ignore_eos": True})
    assert status == 200, body
    expected = json.loads(body)["choices"][0]["message"]["content"]
    assert expected and shown == expected
    assert "tokens/s" in text_of(browser, "#chat p.hint")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "playground.png"))
    assert browser_errors(browser) == []


def set_fields(form, values):
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)


def session_messages(port, session):
    status, _, body = call(port, "GET", f"/api/v1/sessions/{session}")
    assert status == 200, body
    return json.loads(body)["data"]["messages"]


def test_playground_lists_resumes_and_keeps_sessions(console_daemon, browser):
    port = console_daemon.port
    options = {"max_tokens": 6, "temperature": 0, "ignore_eos": True}
    status, _, body = call(port, "POST", "/api/v1/sessions",
                           {"model": "tiny", "name": "console story", "system": "Be brief.", "options": options})
    assert status == 200, body
    session = json.loads(body)["data"]["id"]
    status, _, body = call(port, "POST", f"/api/v1/sessions/{session}/messages", {"content": "Hello", "stream": False})
    assert status == 200, body
    first = json.loads(body)["data"]["message"]["content"]

    # Listed (in a fresh page: the view reads the list as it opens); resumed with its messages, model and system prompt.
    browser.get(f"http://127.0.0.1:{port}/")
    open_view(browser, console_daemon, "playground")
    selector = f"#session-list [data-resume='{session}']"
    wait_for(browser, "return document.querySelector(arguments[0])", selector)
    assert text_of(browser, selector) == "console story"
    browser.find_element(By.CSS_SELECTOR, selector).click()
    wait_for(browser, "return document.querySelectorAll('#chat .msg').length === 2")
    shown = browser.execute_script("return [...document.querySelectorAll('#chat .msg')].map((m) => m.textContent)")
    assert shown == ["Hello", first]
    assert text_of(browser, "#chat-session") == "Session console story with tiny"
    form = browser.find_element(By.ID, "chat-form")
    assert form.find_element(By.NAME, "system").get_attribute("value") == "Be brief."
    assert form.find_element(By.NAME, "keep").is_selected()

    # Continued: the reply is stored in the session, as the page shows it.
    set_fields(form, {"temperature": "0", "max_tokens": "6"})
    if not form.find_element(By.NAME, "ignore_eos").is_selected():
        form.find_element(By.NAME, "ignore_eos").click()
    form.find_element(By.NAME, "prompt").send_keys("Again")
    form.find_element(By.ID, "chat-send").click()
    wait_for(browser, "return document.querySelectorAll('#chat .assistant')[1]?.dataset.state === 'done'")
    reply = browser.execute_script("return document.querySelectorAll('#chat .assistant')[1].textContent")
    stored = session_messages(port, session)
    assert [m["content"] for m in stored] == ["Hello", first, "Again", reply]
    assert not stored[-1]["partial"]
    wait_for(browser, "return document.querySelector(arguments[0])?.parentElement.textContent.includes('4 messages')", selector)

    # A new chat kept as a session: made by the page, listed first, its messages stored.
    browser.find_element(By.ID, "chat-new").click()
    assert browser.execute_script("return document.querySelectorAll('#chat .msg').length") == 0
    assert browser.execute_script("return document.getElementById('chat-session').textContent") == ""
    form.find_element(By.NAME, "keep").click()
    form.find_element(By.NAME, "prompt").send_keys("Fresh start")
    form.find_element(By.ID, "chat-send").click()
    wait_for(browser, "return document.querySelector('#chat .assistant')?.dataset.state === 'done'")
    status, _, body = call(port, "GET", "/api/v1/sessions?limit=1")
    newest = json.loads(body)["data"]["sessions"][0]
    assert newest["id"] != session and newest["model"] == "tiny"
    assert [m["content"] for m in session_messages(port, newest["id"])][0] == "Fresh start"
    wait_for(browser, "return document.querySelector('#session-list li')?.dataset.id === arguments[0]", newest["id"])
    assert browser_errors(browser) == []


def test_playground_stop_keeps_a_sessions_reply_as_partial(browser, workdir, hub, tmp_path):
    # A daemon of its own (the other tests count the console daemon's models), with a run `long` of the tiny model
    # with a context of 32768 tokens: a reply of 20000 tokens takes seconds, so Stop clicked once the reply streams
    # surely comes mid-reply.
    model = tmp_path / "qwen2-long"
    shutil.copytree(TINY_MODEL, model)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 32768
    (model / "config.json").write_text(json.dumps(config))
    server = Daemon(workdir / "console-stop", extra_env=hub_env(hub))
    port = server.port
    try:
        start_tiny_run(server, model_dir=model, repo="acme/qwen2-long", name="long")
        browser.get(f"http://127.0.0.1:{port}/")
        open_view(browser, server, "playground")
        browser.find_element(By.ID, "chat-new").click()
        form = browser.find_element(By.ID, "chat-form")
        set_fields(form, {"model": "long", "temperature": "0", "max_tokens": "20000"})
        if not form.find_element(By.NAME, "ignore_eos").is_selected():
            form.find_element(By.NAME, "ignore_eos").click()
        form.find_element(By.NAME, "keep").click()
        form.find_element(By.NAME, "prompt").send_keys("Tell me a long story")
        form.find_element(By.ID, "chat-send").click()
        wait_for(browser, "return document.querySelector('#chat .assistant')?.dataset.state === 'streaming'")
        browser.find_element(By.ID, "chat-stop").click()
        wait_for(browser, "return document.querySelector('#chat .assistant')?.dataset.state === 'stopped'")
        assert "kept as partial" in text_of(browser, "#chat p.hint")
        shown = browser.execute_script("return document.querySelector('#chat .assistant').textContent")
        session = wait_for(browser, "return document.querySelector('#session-list li.current')?.dataset.id")

        # Stored with the text so far, marked partial; what the page showed is where it begins.
        stored = session_messages(port, session)
        assert [m["role"] for m in stored] == ["user", "assistant"], stored
        assert stored[-1]["partial"] is True and stored[-1].get("finish_reason") is None, stored[-1]
        assert shown and stored[-1]["content"].startswith(shown)

        # Resumed in a fresh page, the reply is shown as partial.
        browser.get(f"http://127.0.0.1:{port}/")
        open_view(browser, server, "playground")
        selector = f"#session-list [data-resume='{session}']"
        wait_for(browser, "return document.querySelector(arguments[0])", selector)
        browser.find_element(By.CSS_SELECTOR, selector).click()
        wait_for(browser, "return document.querySelector('#chat .assistant')?.dataset.state === 'partial'")
        assert browser_errors(browser) == []
    finally:
        server.stop()


def format_bytes(browser, count):
    """The console's own rendering of a byte count."""
    return browser.execute_async_script(
        "const [count, done] = arguments; import('/ui/dom.js').then((dom) => done(dom.formatBytes(count)))", count)


def test_status_shows_data_directory_use_and_free_space(console_daemon, browser):
    open_view(browser, console_daemon, "status")
    status, _, body = call(console_daemon.port, "GET", "/api/v1/status")
    assert status == 200, body
    summary = json.loads(body)["data"]
    assert summary["versions"] == 1 and summary["free_bytes"] > 0 and summary["data_dir_bytes"] > 0
    assert text_of(browser, "#status-disk .stat") == format_bytes(browser, summary["data_dir_bytes"])
    assert text_of(browser, "#status-disk .hint") == f"1 local version in {summary['data_dir']}"
    # Free space moves as other tests write; the file system's size does not.
    assert re.fullmatch(r"[0-9.]+ [KMGT]?B", text_of(browser, "#status-free .stat"))
    total = format_bytes(browser, summary["total_bytes"])
    assert text_of(browser, "#status-free .hint") == f"of {total} on the data directory's file system"
    assert text_of(browser, "#status-version .hint").startswith("up ")
    assert browser_errors(browser) == []


def test_start_form_sends_optional_fields_only_when_filled(console_daemon, browser):
    open_view(browser, console_daemon, "runs")
    browser.execute_script("""
        window.startBodies = [];
        const original = window.fetch;
        window.fetch = (url, options = {}) => {
          if (String(url) === '/api/v1/models/start') window.startBodies.push(JSON.parse(options.body));
          return original(url, options);
        };""")
    form = browser.find_element(By.ID, "start-form")
    # A model that is not pulled: the daemon refuses it, and the page shows the daemon's own message.
    form.find_element(By.NAME, "model").send_keys("acme/not-pulled")
    form.find_element(By.NAME, "tensor_parallel").send_keys("2")
    form.find_element(By.NAME, "memory_fraction").send_keys("0.5")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    failed = "return window.startBodies.length === arguments[0] && document.getElementById('view').textContent.includes('The start failed')"
    wait_for(browser, failed, 1)
    first = browser.execute_script("return window.startBodies[0]")
    assert first == {"model": "acme/not-pulled", "tensor_parallel": 2, "memory_fraction": 0.5}
    _, _, refused = call(console_daemon.port, "POST", "/api/v1/models/start", first)
    assert json.loads(refused)["msg"] in browser.find_element(By.ID, "view").text
    for name in ("tensor_parallel", "memory_fraction"):
        form.find_element(By.NAME, name).clear()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, failed, 2)
    assert browser.execute_script("return window.startBodies[1]") == {"model": "acme/not-pulled"}
    assert browser_errors(browser, expected=[r"status of 409 \(Conflict\)"]) == []


def test_runs_loaded_after_an_event_keep_the_event(console_daemon, browser):
    """The runs list is read before a run starts and its reply held back until the page has shown the new run ready
    from the event stream: the older list must not erase it."""
    port = console_daemon.port
    hold = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.heldLists = [];
        const original = window.fetch;
        window.fetch = async (url, options) => {
          const response = await original(url, options);
          if (String(url) !== '/api/v1/models/running') return response;
          await new Promise((resolve) => window.heldLists.push(resolve));
          return response;
        };"""})
    try:
        browser.get("about:blank")  # so that the page loads anew rather than changing its hash
        browser.get(f"http://127.0.0.1:{port}/#runs")
        wait_for(browser, "return window.heldLists.length > 0 && document.getElementById('live').textContent === 'live'")
        status, _, body = call(port, "POST", "/api/v1/models/start", {"model": "acme/qwen2-tiny", "engine": "builtin", "name": "third"})
        assert status == 200, body
        WebDriverWait(browser, PATIENCE, 0.05).until(lambda d: state_of_row(d, "third") == "ready", "run third never showed ready")
        browser.execute_script("window.heldLists.forEach((release) => release())")
        wait_for(browser, "return document.querySelector(\"#runs-table tr[data-name='tiny']\")", message="the list never loaded")
        assert state_of_row(browser, "third") == "ready", "the list read before the run started erased it"
        assert browser_errors(browser) == []
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": hold["identifier"]})
        call(port, "POST", "/api/v1/models/running/third/stop")


def test_archive_imported_through_the_page(console_daemon, browser, tmp_path):
    """An exported archive, its version removed, comes back through the page's Import (an upload with a progress bar);
    a file that is not an archive shows the daemon's own error."""
    port = console_daemon.port
    row = "#versions-table tr[data-repo='acme/qwen2-tiny']"
    _, _, body = call(port, "GET", "/api/v1/models/local")
    version = json.loads(body)["data"][0]
    status, _, archive = call(
        port, "GET", f"/api/v1/models/acme%2Fqwen2-tiny/export?source={version['source']}&revision={version['commit']}&format=tar")
    assert status == 200 and archive
    path = tmp_path / "tiny.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        # Its manifest describes the version; the version's files are the rest.
        files = [member.name for member in tar.getmembers() if member.isfile() and member.name != "modeld-manifest.json"]

    open_view(browser, console_daemon, "versions")
    wait_for(browser, f"return document.querySelector(\"{row}\")")
    status, _, body = call(port, "POST", "/api/v1/models/remove", {"model": "acme/qwen2-tiny", "revision": version["commit"]})
    assert status == 200, body
    wait_for(browser, f"return !document.querySelector(\"{row}\")", message="the removed version stayed listed")

    browser.find_element(By.ID, "import-file").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "#import-form button[type=submit]").click()
    shown = wait_for(browser, "const t = document.getElementById('import-status').textContent;"
                              "return /Imported|failed/.test(t) && t")
    assert shown == (f"Imported acme/qwen2-tiny {version['commit'][:12]}: {len(files)} files, "
                     f"{format_bytes(browser, version['size_bytes'])}."), shown
    WebDriverWait(browser, PATIENCE, 0.05).until(
        lambda d: d.execute_script(f"return document.querySelector(\"{row} [data-state]\")?.dataset.state") == "ready",
        "the imported version was not listed as ready")
    _, _, body = call(port, "GET", "/api/v1/models/local")
    assert [(v["repo"], v["commit"], v["state"]) for v in json.loads(body)["data"]] == [
        ("acme/qwen2-tiny", version["commit"], "ready")]
    assert browser.execute_script("return document.querySelector('#import-status progress')") is None

    # Not an archive: the page shows what the daemon answers the same bytes, and the list is as it was.
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"these are notes, not an archive\n" * 8)
    status, _, body = call(port, "POST", "/api/v1/models/import", junk.read_bytes())
    assert status == 400, body
    refusal = json.loads(body)
    message = refusal.get("msg") or refusal["error"]["message"]
    browser.find_element(By.ID, "import-file").send_keys(str(junk))
    browser.find_element(By.CSS_SELECTOR, "#import-form button[type=submit]").click()
    shown = wait_for(browser, "const e = document.querySelector('#import-status .error'); return e && e.textContent")
    assert shown == f"Import failed: {message}", shown
    assert browser.execute_script(f"return document.querySelectorAll(\"{row}\").length") == 1
    assert browser_errors(browser, expected=[r"models/import .*status of 400 \(Bad Request\)"]) == []


def test_key_created_then_asked_for(console_daemon, browser):
    open_view(browser, console_daemon, "keys")
    form = browser.find_element(By.ID, "key-create-form")
    form.find_element(By.NAME, "name").send_keys("console-admin")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    key = text_of(browser, "#new-key")
    assert key.startswith("mdk_") or len(key) > 20
    wait_for(browser, "return document.querySelector(\"#keys-table tr[data-name='console-admin']\")")
    # From now on the API needs the key; the console's own files still do not.
    assert call(console_daemon.port, "GET", "/api/v1/models/running")[0] == 401
    assert call(console_daemon.port, "GET", "/", headers={"Accept": "text/html"})[0] == 200
    assert call(console_daemon.port, "GET", "/ui/views/keys.js")[0] == 200

    # A new page of this tab has no key yet: the API says 401 and the page asks for one.
    browser.refresh()
    wait_for(browser, "return document.getElementById('key-dialog').open")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "key-prompt.png"))
    browser.find_element(By.ID, "key-input").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait_for(browser, "return !document.getElementById('key-dialog').open")
    wait_for(browser, "return document.querySelector(\"#keys-table tr[data-name='console-admin']\")")
    wait_for(browser, "return document.getElementById('live').textContent === 'live'")
    assert browser.execute_script("return sessionStorage.getItem('modeld.apiKey')") == key
    assert key not in browser.current_url and browser.get_cookies() == []

    # Revoked through the page, after its confirmation.
    browser.find_element(By.CSS_SELECTOR, "#keys-table tr[data-name='console-admin'] button.danger").click()
    wait_for(browser, "return document.getElementById('confirm-dialog').open")
    browser.find_element(By.ID, "confirm-ok").click()
    wait_for(browser, "const row = document.querySelector(\"#keys-table tr[data-name='console-admin']\");"
                      "return row && row.textContent.includes('revoked')")
    # The only errors: the browser's own lines for the 401s that made the page ask for the key.
    assert browser_errors(browser, expected=[r"status of 401 \(Unauthorized\)"]) == []


def test_pages_left_for_others_give_back_their_connections(console_daemon, browser):
    """Browsers open at most six connections per host. Each console page holds one for its event stream; a page
    left for another (kept in the back/forward cache) closes it, so loading the console again and again keeps working."""
    resize(browser, "desktop")
    ready = "return document.querySelector(\"#runs-table tr[data-name='tiny'] [data-state='ready']\")"
    for load in range(10):
        browser.get("about:blank")
        browser.get(f"http://127.0.0.1:{console_daemon.port}/#runs")
        # A load takes well under a second; one waiting for a connection held by a cached page waits far longer
        # (it took 15-30 s before pages closed their streams on pagehide).
        WebDriverWait(browser, 10, poll_frequency=0.05).until(
            lambda d: d.execute_script(ready), f"load {load + 1}: the page waited for a connection")
        wait_for(browser, "return document.getElementById('live').textContent === 'live'")
    assert browser_errors(browser) == []
