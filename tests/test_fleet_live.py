"""Three live replicas with KV migration: the gateway follows a migrated stream, a drain
empties a replica, and a burst at overload completes with the rescheduler on."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests import fleet_helpers
from tests.conftest import TESTS, deploy_app
from tests.fleet_helpers import client, stream_text, wait_for

pytestmark = pytest.mark.engine
ADMIN = {"authorization": "Bearer fleet-admin"}


@pytest.fixture(scope="module")
def fleet(serve_port: int):
    from ray import serve

    from replicas.fleet import kill_registry

    app = deploy_app(TESTS / "fleet.yaml", "fleet", serve_port)
    yield app
    serve.delete("fleet")
    kill_registry("fleet")


def overview(app) -> dict:
    return fleet_helpers.overview(app, ADMIN)


def replicas(app) -> list[dict]:
    return fleet_helpers.replicas(app, ADMIN)


async def test_stream_follows_an_admin_migration_with_identical_text(fleet) -> None:
    c = client(fleet)
    prompt = "tell me about the gateway and the replica " * 8
    _, reference, ref_tokens = await stream_text(c, prompt, 600)
    migrated: dict = {}

    async def migrate_once(rid: str, text: str) -> None:
        if not migrated and len(text) > 150:
            migrated["pending"] = True
            r = await asyncio.to_thread(httpx.post, fleet.base + "/admin/v1/migrations", headers=ADMIN,
                                        json={"request_id": rid, "destination": "auto"}, timeout=60)
            migrated.update(status=r.status_code, body=r.json())

    _, text, tokens = await stream_text(c, prompt, 600, migrate_once)
    assert migrated["status"] == 202, migrated
    assert migrated["body"]["stage"] == "done", migrated["body"]
    assert text == reference  # nothing lost or repeated across the move
    assert tokens == ref_tokens == 600
    recent = overview(fleet)["migrations"]["recent"]
    # The operator page shows the request's pause: stop at the source to admit at the destination.
    assert any(m["state"] == "completed" and 0 < m["downtime_ms"] < 5000 for m in recent), recent


async def test_admin_errors_are_clear(fleet) -> None:
    r = httpx.post(fleet.base + "/admin/v1/migrations", headers=ADMIN,
                   json={"request_id": "chatcmpl-nope"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "request_not_found"
    r = httpx.post(fleet.base + "/admin/v1/replicas/nope/drain", headers=ADMIN, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "replica_not_found"
    r = httpx.post(fleet.base + "/admin/v1/migrations", headers=ADMIN, json={"request_id": 5}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "request_id"


async def test_burst_at_overload_completes_and_a_drained_replica_empties(fleet) -> None:
    from ray import serve

    resched = serve.get_deployment_handle("rescheduler", app_name="fleet")
    await resched.set_auto.remote(True)
    c = client(fleet)
    # A burst shaped like the Azure conversation trace (long prompts, shorter answers),
    # far beyond what three replicas of 160 KV blocks hold at once.
    sizes = [(20 + (i * 37) % 60, 60 + (i * 53) % 140) for i in range(30)]
    before = len(overview(fleet)["migrations"]["recent"])
    tasks = [asyncio.create_task(stream_text(c, "replica cache router " * words, out))
             for words, out in sizes]
    busiest = await wait_for(lambda: max(
        (r for r in replicas(fleet) if len(r["requests"]) >= 3),
        key=lambda r: len(r["requests"]), default=None))
    r = httpx.post(fleet.base + f"/admin/v1/replicas/{busiest['replica_id']}/drain", headers=ADMIN,
                   timeout=30)
    assert r.status_code == 202 and r.json()["draining"] is True
    results = await asyncio.gather(*tasks)
    assert [tokens for _, _, tokens in results] == [out for _, out in sizes]  # every request completed
    # Every replica empties, the drained one too: the last answers reach the clients a
    # stats tick (50 ms) before their replicas report them gone; a request left behind stays.
    await wait_for(lambda: all(x["running"] + x["waiting"] == 0 for x in replicas(fleet)), timeout=10)
    drained = next(x for x in replicas(fleet) if x["replica_id"] == busiest["replica_id"])
    assert drained["draining"]
    recent = overview(fleet)["migrations"]["recent"]
    assert len(recent) > before
    assert any(m["state"] == "completed" and m["reason"] == "drain" for m in recent)
    httpx.post(fleet.base + f"/admin/v1/replicas/{busiest['replica_id']}/drain", headers=ADMIN,
               json={"draining": False}, timeout=30)


def test_operator_page_shows_the_fleet_and_drains_a_replica(fleet) -> None:
    from conftest import ARTIFACTS, free_port
    from dashboard_cdp import Browser, find_chromium

    binary = find_chromium()
    assert binary is not None, "chromium is missing: deploy/chromium.sh installs it"
    browser = Browser(binary, free_port())
    target = replicas(fleet)[0]["replica_id"]
    try:
        browser.goto(fleet.base + "/dashboard")
        browser.wait_for("!document.getElementById('login').hidden")
        browser.type("#admin-key", "fleet-admin")
        browser.click("#login-form button")
        browser.wait_for("document.querySelectorAll('[data-testid^=\"replica-\"]').length === 3", timeout=20)
        assert "tiny" in browser.eval("document.getElementById('models').innerText")
        drain = f'[data-action="drain"][data-replica="{target}"]'
        browser.click(drain)  # arms the button
        browser.click(drain)  # confirms: POST .../drain with the admin key
        browser.wait_for(f"document.querySelector('[data-testid=\"replica-{target}\"]').innerText"
                         ".includes('draining')", timeout=20)
        assert next(r for r in replicas(fleet) if r["replica_id"] == target)["draining"] is True
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "dashboard-live.png")
        assert (ARTIFACTS / "dashboard-live.png").stat().st_size > 20_000
    finally:
        browser.close()
        httpx.post(fleet.base + f"/admin/v1/replicas/{target}/drain", headers=ADMIN,
                   json={"draining": False}, timeout=30)


async def test_scale_in_and_redeploy_drain_stopping_replicas_by_migration(fleet, serve_port: int) -> None:
    """A redeploy with fewer replicas: Serve replaces the replicas one by one (a new code
    version) and removes one; every replica it stops is drained by migration while the
    streams it was serving go on, identical to undisturbed runs."""
    c = client(fleet)
    prompts = [f"request {i}: tell me about the gateway and the replica " * 6 for i in range(6)]
    references = await asyncio.gather(*(stream_text(c, p, 500) for p in prompts))
    before = {r["replica_id"] for r in replicas(fleet)}
    assert len(before) == 3
    for rid in before:  # earlier tests drained one; every replica takes requests again
        httpx.post(fleet.base + f"/admin/v1/replicas/{rid}/drain", headers=ADMIN,
                   json={"draining": False}, timeout=30)
    await wait_for(lambda: not any(r["draining"] for r in replicas(fleet)))
    await asyncio.sleep(0.5)  # the routers' stats catch up (0.1 s period)
    streams = [asyncio.create_task(stream_text(c, p, 500)) for p in prompts]
    await wait_for(lambda: all(r["running"] for r in replicas(fleet)), timeout=30, every=0.05)

    def scale_to_two(cfg) -> None:
        cfg.models[0].replicas = 2

    await asyncio.to_thread(deploy_app, TESTS / "fleet.yaml", "fleet", serve_port, scale_to_two)
    results = await asyncio.gather(*streams)
    assert [(text, tokens) for _, text, tokens in results] == \
        [(text, tokens) for _, text, tokens in references]  # nothing lost or repeated
    after = await wait_for(lambda: (ids := {r["replica_id"] for r in replicas(fleet)}) and len(ids) == 2
                           and ids, timeout=60)
    stopped = before - after
    assert stopped
    moved = [m for m in overview(fleet)["migrations"]["recent"]
             if m["source"] in stopped and m["state"] == "completed" and m["reason"] == "drain"]
    assert moved, overview(fleet)["migrations"]["recent"]
