#!/usr/bin/env python3
"""Time to first data of each web-console view in headless Chromium on loopback: a fresh page load of
`/#VIEW` with the browser cache off, from navigation start (`performance.now()` 0) to the moment the view's data is
in the DOM (a MutationObserver installed before the page's own scripts records it). The daemon is the one the
browser tests use (Tests/Hostile/conftest.py: the tiny model adopted and a ready run), from the debug build unless
MODELD_PRODUCTS names another folder of binaries.

  swift build --build-tests && scripts/bench-console.py        # ROUNDS=7
"""
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "Hostile"))

from conftest import Daemon, NotFoundHub, hub_env, start_tiny_run  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "7"))
# What shows that a view has its data (the same marks the browser tests wait for).
READY = {
    "status": "document.querySelector('#status-tokens')",
    "runs": "document.querySelector(\"#runs-table tr[data-name='tiny'] [data-state='ready']\")",
    "versions": "document.querySelector(\"#versions-table tr[data-repo='acme/qwen2-tiny'] [data-state='ready']\")",
    "models": "document.querySelectorAll('#catalog article').length > 3",
    "keys": "document.querySelector('#keys-table p, #keys-table table')",
    "playground": "document.querySelector('#chat-form [name=model]') && document.querySelector('#chat-form [name=model]').value === 'tiny'",
}
# Installed before the page's scripts: records when `window.__ready()` first holds.
OBSERVER = """
window.__firstData = null;
new MutationObserver(function (_, observer) {
  try {
    if (window.__ready && window.__ready()) { window.__firstData = performance.now(); observer.disconnect(); }
  } catch (e) {}
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def main():
    hub = NotFoundHub()
    root = Path(tempfile.mkdtemp(prefix="modeld-bench-console."))
    daemon = Daemon(root / "daemon", extra_env=hub_env(hub))
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        start_tiny_run(daemon)
        print(f"time to first data, headless Chromium at 1280x800, {ROUNDS} loads per view "
              f"({os.cpu_count()} CPUs: {cpu_model()})")
        for view, ready in READY.items():
            script = driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument", {"source": f"window.__ready = function () {{ return {ready}; }};" + OBSERVER})
            times = []
            for _ in range(ROUNDS):
                driver.get("about:blank")
                driver.get(f"http://127.0.0.1:{daemon.port}/#{view}")
                try:
                    WebDriverWait(driver, 30, poll_frequency=0.02).until(lambda d: d.execute_script("return window.__firstData"))
                except Exception:
                    raise SystemExit(f"{view}: no data; the page shows: " + str(driver.execute_script(
                        "return [document.getElementById('view') && document.getElementById('view').innerText.slice(0, 300), "
                        "performance.getEntriesByType('resource').map(e => e.name + ' ' + Math.round(e.duration))]")))
                times.append(driver.execute_script("return window.__firstData"))
            driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
            print(f"{view:<11} median {statistics.median(times):6.1f} ms   min {min(times):6.1f}   max {max(times):6.1f}")
    finally:
        driver.quit()
        daemon.stop()
        hub.shutdown()


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
