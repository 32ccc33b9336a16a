"""The operator page in headless Chromium, against a stand-in admin API.

The page's rendering and actions are under test here, so a small local server plays
the admin API (dashboards/API.md), building its overview with the real
dashboards.overview.build_overview; the lead's end-to-end test runs the real gateway.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ARTIFACTS, free_port
from dashboard_cdp import Browser, find_chromium

from dashboards.overview import RouterTally, build_overview

STATIC = Path(__file__).resolve().parent.parent / "dashboards" / "static"
KEY = "test-admin-key"
MODELS = [{"name": "smollm2-135m", "price_input_per_m": 0.02, "price_output_per_m": 0.04},
          {"name": "gemma3-270m", "price_input_per_m": 0.04, "price_output_per_m": 0.08}]


class FakeFleet:
    """Plain inputs for build_overview, changed by the admin actions the page sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict, str]] = []
        self.draining: set[str] = set()
        self.tick = 0
        self.tally = RouterTally()
        for i in range(12):
            self.tally.add_decision("smollm2-135m" if i % 3 else "gemma3-270m", "math" if i % 2 else "chat", 1e-4)
            self.tally.add_outcome(1e-4, 3e-4)

    def replica(self, rid: str, model: str, running: int, used: int) -> dict:
        reqs = [{"request_id": f"req-{rid}-{k}", "num_tokens": 300 + k, "num_blocks": 10, "generated": 20,
                 "priority": 0, "migrating": False, "waiting": False} for k in range(running)]
        freeness = float("-inf") if rid in self.draining else (200 - used) / max(running, 1)
        return {"replica_id": rid, "model": model, "running": running, "waiting": self.tick % 3,
                "kv_blocks_used": used, "kv_blocks_total": 200, "tokens_in_flight": 310 * running,
                "freeness": freeness, "draining": rid in self.draining, "requests": reqs,
                "timestamp": time.time()}

    def overview(self) -> dict:
        self.tick += 1
        stats = {"smollm2-135m": [self.replica("r-a1", "smollm2-135m", 3, 60 + self.tick % 20),
                                  self.replica("r-a2", "smollm2-135m", 1, 150)],
                 "gemma3-270m": [self.replica("r-b1", "gemma3-270m", 2, 190)]}
        migrations = [
            {"migration_id": "m-1", "request_id": "req-r-a2-0", "model": "smollm2-135m", "source": "r-a2",
             "destination": "r-a1", "reason": "balance", "state": "precopy", "started_at": time.time() - 1,
             "finished_at": None, "bytes": 3 << 20, "downtime_ms": None, "cause": None},
            {"migration_id": "m-0", "request_id": "req-old", "model": "gemma3-270m", "source": "r-b1",
             "destination": "r-b2", "reason": "drain", "state": "aborted", "started_at": time.time() - 60,
             "finished_at": time.time() - 59, "bytes": 1 << 20, "downtime_ms": None, "cause": "no_space"}]
        cache = {"tenants": {"acme": {
            "math": {"lookups": 40, "hits_exact": 5, "hits_semantic": 17, "misses": 18, "entries": 31},
            "chat": {"lookups": 20, "hits_exact": 1, "hits_semantic": 3, "misses": 16, "entries": 12}}}}
        return build_overview(MODELS, stats, migrations, cache, self.tally.to_dict(), {"math": 0.85})


def make_server(fleet: FakeFleet) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json", extra=()) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {KEY}":
                return True
            err = {"error": {"message": "Invalid admin key.", "type": "invalid_request_error",
                             "param": None, "code": "invalid_admin_key"}}
            self._send(401, json.dumps(err).encode())
            return False

        def do_GET(self) -> None:
            if self.path == "/dashboard":
                return self._send(307, b"", extra=[("Location", "/dashboard/")])
            if self.path.startswith("/dashboard/"):
                name = self.path.removeprefix("/dashboard/") or "index.html"
                path = STATIC / name
                if "/" in name or not path.is_file():
                    return self._send(404, b"{}")
                ctype = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}[path.suffix]
                return self._send(200, path.read_bytes(), ctype + "; charset=utf-8")
            if self.path == "/admin/v1/overview":
                if self._authorised():
                    self._send(200, json.dumps(fleet.overview()).encode())
                return None
            return self._send(404, b"{}")

        def do_POST(self) -> None:
            if not self._authorised():
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            fleet.calls.append(("POST", self.path, body, self.headers.get("Authorization", "")))
            if self.path.startswith("/admin/v1/replicas/") and self.path.endswith("/drain"):
                rid = self.path.split("/")[4]
                fleet.draining.add(rid)
                return self._send(202, json.dumps({"replica_id": rid, "draining": True}).encode())
            return self._send(202 if "migrations" in self.path else 200, b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (deploy/chromium.sh installs Debian's package)")
    b = Browser(binary, free_port())
    yield b
    b.close()


def wait_call(fleet: FakeFleet, path: str, timeout: float = 5) -> tuple:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for call in fleet.calls:
            if call[1] == path:
                return call
        time.sleep(0.05)
    raise AssertionError(f"the page did not POST {path}; saw {fleet.calls}")


def test_dashboard_renders_fleet_and_drives_admin_actions(browser: Browser) -> None:
    fleet = FakeFleet()
    server = make_server(fleet)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        browser.goto(base + "/dashboard")
        browser.wait_for("location.pathname === '/dashboard/' && !document.getElementById('login').hidden")
        # A wrong key is refused and the page stays on the sign-in form.
        browser.type("#admin-key", "wrong")
        browser.click("#login-form button")
        browser.wait_for("document.getElementById('login-error').textContent.includes('Invalid admin key')")
        browser.type("#admin-key", KEY)
        browser.click("#login-form button")
        browser.wait_for("document.querySelectorAll('[data-testid^=\"replica-\"]').length === 3")

        text = browser.eval("document.getElementById('models').innerText")
        for needle in ("smollm2-135m", "gemma3-270m", "r-a1", "r-a2", "r-b1", "150/200 (75.0%)"):
            assert needle in text, needle
        assert browser.eval("document.getElementById('status').textContent") == "live"
        assert "aborted" in browser.eval("document.getElementById('migrations-recent').innerText")
        assert "req-r-a2-0" in browser.eval("document.getElementById('migrations-live').innerText")
        assert "math" in browser.eval("document.getElementById('cache-table').innerText")
        assert "$0.00240" in browser.eval("document.getElementById('headline').innerText")  # 12 * 2e-4 saved

        # Drain: first click arms the button, the second sends the POST with the admin key.
        drain = '[data-action="drain"][data-replica="r-a1"]'
        browser.click(drain)
        assert browser.eval(f"document.querySelector('{drain}').textContent") == "Confirm"
        assert not fleet.calls
        browser.click(drain)
        call = wait_call(fleet, "/admin/v1/replicas/r-a1/drain")
        assert call[2] == {"draining": True} and call[3] == f"Bearer {KEY}"
        browser.wait_for("document.querySelector('[data-testid=\"replica-r-a1\"]').innerText.includes('draining')")
        assert browser.eval(f"document.querySelector('{drain}')") is None  # no drain button once draining

        browser.click('[data-testid="requests-gemma3-270m"] summary')  # open the request list
        time.sleep(2.5)  # a poll re-renders the page: the list must stay open
        browser.click('[data-action="migrate"][data-request="req-r-b1-0"]')
        assert wait_call(fleet, "/admin/v1/migrations")[2] == {"request_id": "req-r-b1-0", "destination": "auto"}
        inv = '[data-action="invalidate"][data-category="math"]'
        browser.click(inv)
        time.sleep(2.5)  # armed across a re-render
        browser.click(inv)
        assert wait_call(fleet, "/admin/v1/cache/invalidate")[2] == {"category": "math"}
        fleet.calls.clear()
        browser.type("#inv-tenant", "acme")
        browser.type("#inv-entry", "0")
        browser.click("#invalidate-form button")
        assert wait_call(fleet, "/admin/v1/cache/invalidate")[2] == {"tenant": "acme", "entry_id": 0}

        # The charts plot a history: wait for a few polls, then every chart has lines.
        browser.wait_for("document.querySelectorAll('#chart-running path').length === 2", timeout=15)
        browser.wait_for("document.querySelector('#chart-running path').getAttribute('d').split('L').length >= 3",
                         timeout=15)
        assert browser.eval("document.querySelectorAll('#cache-bars rect').length") == 4  # 2 tracks + 2 bars
        browser.screenshot(ARTIFACTS / "dashboard.png")
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
        errors = [e for e in browser.errors() if "status of 401" not in e]
        assert not errors, errors
    finally:
        server.shutdown()
