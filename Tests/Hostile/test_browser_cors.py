"""Two things only a real browser shows, in headless Chromium (Selenium) against real daemons: CORS as a page on
another origin meets it (real cross-origin `fetch` calls from an ES module, with and without the origin allowed),
and a pull in the console's Models view whose progress bars move and reach 100 % without a reload, from a hub on
loopback that serves a real repository slowly. Every wait is on the page (or a reply), bounded by PATIENCE."""

import functools
import http.server
import json
import shutil
import threading

import pytest
from selenium.webdriver.common.by import By

from conftest import PATIENCE, TINY_MODEL, Daemon, RepoHub, call
from test_console import browser, browser_errors, open_view, resize, wait_for  # noqa: F401 (browser is a fixture)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title><link rel="icon" href="data:,">
<script type="module" src="/probe.js"></script></head><body>another origin</body></html>
"""

# The page's module: each call's outcome (what the page could read, or the error it got) as JSON-able values.
PROBE = """
async function attempt(call) {
  try {
    return await call();
  } catch (error) {
    return { error: error.name };
  }
}

async function read(response) {
  return { status: response.status, type: response.type, requestId: response.headers.get("X-Request-Id"),
           body: response.type === "opaque" ? null : await response.json() };
}

const calls = {
  get: (base) => fetch(`${base}/api/v1/models/local`),
  post: (base) => fetch(`${base}/api/v1/keys`, {
    method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer from-the-page" },
    body: JSON.stringify({ name: "page-key" }) }),
  simple: (base) => fetch(`${base}/api/v1/keys`, {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
    body: JSON.stringify({ name: "simple-key" }) }),
};

window.probe = async (base, names) => {
  const results = {};
  for (const name of names) results[name] = await attempt(async () => read(await calls[name](base)));
  return results;
};
"""

# What Chromium logs when it refuses a cross-origin reply, and the daemon's 403 to the "simple" POST (its reply is
# opaque to the page, not to the log): nothing else may appear.
CORS_ERRORS = (r"has been blocked by CORS policy", r"net::ERR_FAILED",
               r"/api/v1/keys - Failed to load resource: the server responded with a status of 403 \(Forbidden\)$")


@pytest.fixture(scope="module")
def other_origin(tmp_path_factory):
    """The page and its module, served by Python's http.server on another loopback port: another origin."""
    root = tmp_path_factory.mktemp("other-origin")
    (root / "index.html").write_text(PAGE)
    (root / "probe.js").write_text(PROBE)
    handler = functools.partial(QuietFiles, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def key_names(daemon):
    """The names of the daemon's API keys, read over its control socket."""
    status, _, body = call(daemon.control_socket, "GET", "/api/v1/keys")
    assert status == 200, body
    return sorted(key["name"] for key in json.loads(body)["data"])


def probe(driver, page, daemon, calls):
    driver.get(f"{page}/")
    wait_for(driver, "return typeof window.probe === 'function'")
    return driver.execute_async_script(
        "window.probe(arguments[0], arguments[1]).then(arguments[arguments.length - 1])",
        f"http://127.0.0.1:{daemon.port}", calls)


def test_cors_from_a_page_on_another_origin(workdir, browser, other_origin):
    allowing = Daemon(workdir / "cors-allowing", extra_env={"MODELD_CORS_ORIGINS": f"http://localhost:1,{other_origin}"})
    try:
        browser_errors(browser)
        results = probe(browser, other_origin, allowing, ["get", "post"])
        # A simple GET: the page reads the JSON and the exposed request id.
        get = results["get"]
        assert get["status"] == 200 and get["type"] == "cors" and get["body"]["data"] == [], results
        assert get["requestId"] and get["requestId"] == get["body"]["request_id"], results
        # A preflighted POST (JSON body, Authorization): allowed, and the page reads the key it created.
        post = results["post"]
        assert post["status"] in (200, 201) and post["type"] == "cors", results
        assert post["body"]["data"]["name"] == "page-key" and post["body"]["data"]["key"], results
        assert post["requestId"] == post["body"]["request_id"] != get["requestId"], results
        assert "page-key" in key_names(allowing)
        assert browser_errors(browser) == []
    finally:
        allowing.stop()

    refusing = Daemon(workdir / "cors-refusing")
    try:
        results = probe(browser, other_origin, refusing, ["get", "post", "simple"])
        assert results["get"] == {"error": "TypeError"}, results
        assert results["post"] == {"error": "TypeError"}, results
        # The "simple" POST needs no preflight and its reply is opaque: the page cannot tell, but nothing was done.
        assert results["simple"]["type"] == "opaque", results
        assert key_names(refusing) == []
        assert browser_errors(browser, expected=CORS_ERRORS) == []
        # Only the origin stopped it: the same request without a page's Origin creates the key.
        status, _, body = call(refusing.port, "POST", "/api/v1/keys", body=json.dumps({"name": "simple-key"}).encode(),
                               headers={"Content-Type": "text/plain"})
        assert status in (200, 201), body
        assert key_names(refusing) == ["simple-key"]
    finally:
        refusing.stop()


def test_pull_with_live_progress_in_the_console(workdir, browser):
    repo = workdir / "slow-repo"
    shutil.copytree(TINY_MODEL, repo)
    # About 0.7 MB at 250 KB/s: a pull of about 3 s.
    hub = RepoHub("acme/slow-tiny", repo, bytes_per_second=250_000)
    daemon = Daemon(workdir / "pulling", extra_env={"HF_ENDPOINT": hub.endpoint})
    try:
        resize(browser, "desktop")
        browser_errors(browser)
        open_view(browser, daemon, "models")
        browser.execute_script("window.notReloaded = true")
        form = browser.find_element(By.ID, "pull-form")
        form.find_element(By.NAME, "model").send_keys("acme/slow-tiny")
        form.find_element(By.CSS_SELECTOR, "select[name=source] option[value=huggingface]").click()
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        total = "document.querySelector(\"#pulls [data-job] progress[aria-label='Total']\")"
        moving = wait_for(browser, f"const bar = {total}; return bar && bar.value > 0 && bar.value < bar.max && [bar.value, bar.max]",
                          message="no progress bar ever showed a pull under way")
        assert 0 < moving[0] < moving[1]
        wait_for(browser, "return document.querySelector('#pulls [data-job] [data-state]')?.dataset.state === 'ready'",
                 message="the pull never showed ready")
        done = browser.execute_script(f"const bar = {total}; return [bar.value, bar.max]")
        assert done[0] == done[1] == sum(path.stat().st_size for path in repo.iterdir()), done

        open_view(browser, daemon, "versions")
        wait_for(browser, "return document.querySelector(\"#versions-table tr[data-repo='acme/slow-tiny'] [data-state='ready']\")",
                 message="Local versions never listed the pulled version as ready")
        assert browser.execute_script("return window.notReloaded") is True, "the page was reloaded"
        assert browser_errors(browser) == []
    finally:
        daemon.stop()
        hub.shutdown()
