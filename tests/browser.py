"""A small headless-Chromium check of static HTML pages over the DevTools protocol (websocket-client).

`check_page(path)` opens a file in a fresh headless Chromium and returns what a reader would notice:
images that did not load, links to files that do not exist, console errors and failed requests.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


class Browser:
    """One headless Chromium with remote debugging on a free port; a context manager that always ends it."""

    def __init__(self, binary: str, timeout: float = 20.0):
        self.profile = tempfile.mkdtemp(prefix="selfsup-chromium-")
        self.timeout = timeout
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = self._devtools_port()

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                return int(found.group(1))
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError("Chromium did not start its DevTools endpoint")

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def check_page(self, path: Path) -> dict:
        """Load `path`; return {"images": [(src, loaded)], "links": [href], "errors": [console and network errors]}."""
        import websocket
        url = f"http://127.0.0.1:{self.port}/json/new?about:blank"
        target = json.loads(urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=10).read())
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=self.timeout)
        errors: list[str] = []
        next_id = [0]

        def call(method: str, **params) -> dict:
            next_id[0] += 1
            ws.send(json.dumps({"id": next_id[0], "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == next_id[0]:
                    return message.get("result", {})
                note(message)

        def note(message: dict) -> None:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                errors.append(f"request failed: {params.get('errorText')}")

        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                call(f"{domain}.enable")
            call("Page.navigate", url=Path(path).resolve().as_uri())
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:  # wait for the load event (every image fetched or failed)
                message = json.loads(ws.recv())
                if message.get("method") == "Page.loadEventFired":
                    break
                note(message)
            else:
                raise RuntimeError(f"{path} did not finish loading in {self.timeout} s")
            script = ("JSON.stringify({images: Array.from(document.images).map(i => [i.src, i.complete && "
                      "i.naturalWidth > 0]), links: Array.from(document.links).map(a => a.href)})")
            value = call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"]
        finally:
            ws.close()
        found = json.loads(value)
        return {"images": [tuple(i) for i in found["images"]], "links": found["links"], "errors": errors}


def missing_link_targets(links: list[str]) -> list[str]:
    """The file:// links whose file does not exist (other schemes are not followed)."""
    missing = []
    for href in links:
        parsed = urllib.parse.urlparse(href)
        if parsed.scheme == "file" and not os.path.exists(urllib.parse.unquote(parsed.path)):
            missing.append(href)
    return missing
