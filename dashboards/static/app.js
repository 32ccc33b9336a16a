// Turnout operator dashboard: polls GET /admin/v1/overview and drives the admin actions.
// Contract: dashboards/API.md. Data is always inserted as text (never as HTML).
"use strict";

const POLL_MS = 2000, HISTORY = 150, KEY_STORE = "turnoutAdminKey";
// The API lives beside the page: <prefix>/dashboard/ -> <prefix>/admin/v1
const API = location.pathname.replace(/\/dashboard(\/.*)?$/, "") + "/admin/v1";
const { lineChart, barChart } = window.TurnoutCharts;
const state = { key: sessionStorage.getItem(KEY_STORE), history: [], timer: null, last: null,
  armed: {}, open: new Set() };
const $ = id => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") el.addEventListener("click", v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c ?? ""));
  return el;
}

function toast(msg, bad) {
  const t = $("toast");
  t.textContent = msg;
  t.className = "toast show" + (bad ? " bad" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = "toast"; }, 4000);
}

async function api(method, path, body) {
  const res = await fetch(API + path, {
    method, headers: { "Authorization": "Bearer " + state.key, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) {
    signOut((data.error && data.error.message) || "The admin key was refused.");
    throw new Error("unauthorized");
  }
  if (!res.ok) throw new Error((data.error && data.error.message) || `HTTP ${res.status}`);
  return data;
}

// ---- sign-in ----------------------------------------------------------------------------
function signIn(key) {
  state.key = key;
  sessionStorage.setItem(KEY_STORE, key);
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  poll();
}

function signOut(message) {
  clearTimeout(state.timer);
  state.key = null;
  sessionStorage.removeItem(KEY_STORE);
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  setStatus("signed out", "");
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + cls;
}

async function poll() {
  clearTimeout(state.timer);
  if (!state.key) return;
  try {
    const ov = await api("GET", "/overview");
    state.last = ov;
    remember(ov);
    render(ov);
    setStatus("live", "ok");
    $("updated").textContent = "updated " + new Date(ov.generated_at * 1000).toLocaleTimeString();
  } catch (e) {
    if (e.message === "unauthorized") return;
    setStatus("unreachable: " + e.message, "bad");
  }
  state.timer = setTimeout(poll, POLL_MS);
}

function remember(ov) {
  const sample = { t: ov.generated_at, running: {}, waiting: {}, hit: ov.cache.total.hit_rate,
    saved: ov.router.saved_usd };
  for (const m of ov.models) { sample.running[m.name] = m.totals.running; sample.waiting[m.name] = m.totals.waiting; }
  state.history.push(sample);
  if (state.history.length > HISTORY) state.history.shift();
}

function seriesOf(field, names) {
  return names.map(n => ({ name: n, points: state.history.filter(s => n in s[field]).map(s => [s.t, s[field][n]]) }));
}

// ---- rendering ----------------------------------------------------------------------------
function render(ov) {
  const names = ov.models.map(m => m.name);
  const totals = ov.models.reduce((a, m) => ({ r: a.r + m.totals.replicas, run: a.run + m.totals.running,
    wait: a.wait + m.totals.waiting }), { r: 0, run: 0, wait: 0 });
  $("headline").replaceChildren(
    stat("Models", names.length), stat("Replicas", totals.r), stat("Running", totals.run),
    stat("Waiting", totals.wait), stat("Migrations in flight", ov.migrations.in_flight.length),
    stat("Cache hit rate", pct(ov.cache.total.hit_rate)), stat("Saved vs always-best", usd(ov.router.saved_usd)));
  $("chart-running").replaceChildren(lineChart(seriesOf("running", names)));
  $("chart-waiting").replaceChildren(lineChart(seriesOf("waiting", names)));
  $("models").replaceChildren(...ov.models.map(renderModel));
  renderMigrations(ov);
  renderCache(ov.cache);
  renderRouter(ov.router);
}

const pct = v => (100 * (v || 0)).toFixed(1) + "%";
const usd = v => "$" + (v || 0).toFixed(v >= 1 ? 2 : 5);
const stat = (label, value) => h("div", { class: "card stat" }, h("div", { class: "value" }, value),
  h("div", { class: "muted" }, label));

function bar(frac, label) {
  const f = Math.max(0, Math.min(1, frac || 0));
  const cls = f > 0.9 ? "hot" : f > 0.7 ? "warm" : "";
  return h("div", { class: "bar " + cls, title: label }, h("span", { style: `width:${(f * 100).toFixed(1)}%` }),
    h("em", {}, label));
}

function renderModel(m) {
  const rows = m.replicas.map(r => h("tr", { "data-testid": "replica-" + r.replica_id, class: r.draining ? "draining" : "" },
    h("td", { class: "mono" }, r.replica_id),
    h("td", {}, r.running), h("td", {}, r.waiting),
    h("td", { class: "wide" }, bar(r.kv_usage, `${r.kv_blocks_used}/${r.kv_blocks_total} (${pct(r.kv_usage)})`)),
    h("td", {}, r.freeness === null ? "—" : r.freeness.toFixed(1)),
    h("td", {}, r.tokens_in_flight),
    h("td", {}, r.draining ? h("span", { class: "pill warn" }, "draining") : h("span", { class: "pill" }, "serving")),
    h("td", {}, r.draining ? "" : confirmButton("Drain", "drain:" + r.replica_id, () => drain(r.replica_id),
      { "data-action": "drain", "data-replica": r.replica_id })),
  ));
  const reqs = m.replicas.flatMap(r => r.requests.map(q => h("li", {},
    h("span", { class: "mono" }, q.request_id), ` on ${r.replica_id}: ${q.num_tokens} tokens`,
    q.migrating ? h("span", { class: "pill warn" }, "migrating") :
      h("button", { class: "small", "data-action": "migrate", "data-request": q.request_id,
        onclick: () => migrate(q.request_id, "auto") }, "migrate"))));
  return h("div", { class: "model", "data-testid": "model-" + m.name },
    h("h3", {}, m.name, h("span", { class: "muted" },
      ` ${m.totals.replicas} replicas · KV ${pct(m.totals.kv_usage)} · $${m.price_input_per_m}/$${m.price_output_per_m} per M tokens`)),
    h("table", {}, h("thead", {}, h("tr", {}, ["replica", "running", "waiting", "KV cache", "freeness",
      "tokens", "state", ""].map(t => h("th", {}, t)))), h("tbody", {}, rows)),
    reqs.length ? requestList(m.name, reqs) : "");
}

// The request list stays open across re-renders once the operator opened it.
function requestList(model, items) {
  const d = h("details", { open: state.open.has(model), "data-testid": "requests-" + model },
    h("summary", {}, `${items.length} requests`), h("ul", { class: "reqs" }, items));
  d.addEventListener("toggle", () => { if (d.open) state.open.add(model); else state.open.delete(model); });
  return d;
}

// Two clicks to act; the armed state lives in `state` so a re-render between clicks keeps it.
function confirmButton(label, key, action, attrs) {
  const b = h("button", attrs, label);
  const arm = on => {
    if (on) { b.dataset.armed = "1"; b.textContent = "Confirm"; } else { delete b.dataset.armed; b.textContent = label; }
  };
  arm(state.armed.key === key && Date.now() < state.armed.until);
  b.addEventListener("click", () => {
    if (b.dataset.armed) { state.armed = {}; b.disabled = true; b.textContent = "Working…"; action(); return; }
    state.armed = { key, until: Date.now() + 4000 };
    arm(true);
    setTimeout(() => { if (!(state.armed.key === key && Date.now() < state.armed.until)) arm(false); }, 4100);
  });
  return b;
}

function migrationRow(x) {
  return h("tr", {}, h("td", { class: "mono" }, x.request_id), h("td", {}, x.model),
    h("td", { class: "mono" }, `${x.source} → ${x.destination}`), h("td", {}, x.reason),
    h("td", {}, h("span", { class: "pill " + (x.state === "aborted" ? "bad" : x.state === "completed" ? "ok" : "warn") }, x.state)),
    h("td", {}, x.bytes ? (x.bytes / 1048576).toFixed(1) + " MiB" : ""),
    h("td", {}, x.downtime_ms === null || x.downtime_ms === undefined ? "" : x.downtime_ms.toFixed(1) + " ms"),
    h("td", {}, x.cause || ""));
}

function migrationTable(list, empty) {
  if (!list.length) return h("p", { class: "muted" }, empty);
  return h("table", {}, h("thead", {}, h("tr", {}, ["request", "model", "route", "reason", "state", "moved",
    "downtime", "cause"].map(t => h("th", {}, t)))), h("tbody", {}, list.map(migrationRow)));
}

function renderMigrations(ov) {
  $("migrations-live").replaceChildren(migrationTable(ov.migrations.in_flight, "none in flight"));
  $("migrations-recent").replaceChildren(migrationTable(ov.migrations.recent, "none yet"));
  const sel = $("migrate-dest"), keep = sel.value;
  const ids = ov.models.flatMap(m => m.replicas.filter(r => !r.draining).map(r => [r.replica_id, m.name]));
  sel.replaceChildren(h("option", { value: "auto" }, "auto (freest)"),
    ...ids.map(([id, model]) => h("option", { value: id }, `${id} (${model})`)));
  sel.value = [...sel.options].some(o => o.value === keep) ? keep : "auto";
}

function renderCache(c) {
  $("cache-bars").replaceChildren(barChart(c.categories.map(r => ({ label: r.category, value: r.hit_rate,
    text: pct(r.hit_rate) })), 1));
  $("chart-hit").replaceChildren(lineChart([{ name: "hit rate", points: state.history.map(s => [s.t, s.hit]) }],
    { max: 1, percent: true }));
  $("cache-table").replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, ["category", "lookups", "hits",
    "misses", "entries", "threshold", ""].map(t => h("th", {}, t)))), h("tbody", {}, c.categories.map(r =>
    h("tr", { "data-testid": "cache-" + r.category }, h("td", {}, r.category), h("td", {}, r.lookups),
      h("td", {}, r.hits), h("td", {}, r.misses), h("td", {}, r.entries),
      h("td", {}, r.threshold === null ? "—" : r.threshold.toFixed(2)),
      h("td", {}, confirmButton("Invalidate", "invalidate:" + r.category, () => invalidate({ category: r.category }),
        { class: "small", "data-action": "invalidate", "data-category": r.category })))))));
}

function renderRouter(r) {
  $("router-bars").replaceChildren(barChart(Object.entries(r.by_model).map(([m, n]) => ({ label: m, value: n }))));
  $("chart-saved").replaceChildren(lineChart([{ name: "saved (USD)", points: state.history.map(s => [s.t, s.saved]) }]));
  $("router-table").replaceChildren(
    h("p", {}, `${r.total_decisions} decisions · realised ${usd(r.realised_cost_usd)} · predicted `,
      `${usd(r.predicted_cost_usd)} · always-best ${usd(r.baseline_cost_usd)} · saved ${pct(r.saved_ratio)}`),
    h("table", {}, h("thead", {}, h("tr", {}, ["category", "model", "decisions"].map(t => h("th", {}, t)))),
      h("tbody", {}, r.decisions.map(d => h("tr", {}, h("td", {}, d.category), h("td", {}, d.model), h("td", {}, d.count))))));
}

// ---- actions ------------------------------------------------------------------------------
async function act(what, fn) {
  try { const out = await fn(); toast(what + ": done"); poll(); return out; }
  catch (e) { if (e.message !== "unauthorized") toast(what + " failed: " + e.message, true); }
}

const drain = id => act(`drain ${id}`, () => api("POST", `/replicas/${encodeURIComponent(id)}/drain`, { draining: true }));
const migrate = (request_id, destination) =>
  act(`migrate ${request_id}`, () => api("POST", "/migrations", { request_id, destination }));

function invalidate(body) {
  const clean = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== "" && v !== undefined));
  if (!Object.keys(clean).length) { toast("name a tenant, category or entry", true); return; }
  return act("invalidate", () => api("POST", "/cache/invalidate", clean));
}

$("login-form").addEventListener("submit", e => { e.preventDefault(); signIn($("admin-key").value.trim()); });
$("logout").addEventListener("click", () => signOut(""));
$("migrate-form").addEventListener("submit", e => {
  e.preventDefault(); migrate($("migrate-request").value.trim(), $("migrate-dest").value);
});
$("invalidate-form").addEventListener("submit", e => {
  e.preventDefault();
  const entry = $("inv-entry").value.trim();
  invalidate({ tenant: $("inv-tenant").value.trim(), category: $("inv-category").value.trim(),
    entry_id: entry === "" ? "" : Number(entry) });
});
if (state.key) signIn(state.key);
