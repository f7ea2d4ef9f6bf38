// Loop Gateway dashboard: setup/login, hash-routed tabs, live updates over the WebSocket.
// All server text is inserted with textContent / createElement, never innerHTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
// The session lives in an HttpOnly cookie that scripts cannot read; this only says whether
// we believe we are logged in.
let token = false;
let socket = null;
let retryMs = 1000;
let retryTimer = null;
let me = null;
const feed = [];                 // newest first, last 150 events
const eventCounts = {};
let current = null;              // { onEvent(ev), dispose() } of the visible view
let renderSeq = 0;

// ---------- helpers ----------
async function api(path, options = {}) {
  // Logged out: late timers and debounced reloads must not call the API.
  if (!token && !path.startsWith("/api/auth/")) throw new Error("Not logged in");
  const headers = {};
  if (options.body !== undefined) headers["content-type"] = "application/json";
  // Marks our own requests: the gateway refuses cookie-authenticated changes without it (CSRF).
  headers["x-requested-with"] = "loop-gateway";
  const init = { method: options.method || "GET", headers, credentials: "same-origin" };
  if (options.body !== undefined) init.body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const res = await fetch(path, init);
  if (res.status === 401 && token && !path.startsWith("/api/auth/login")) { signOut(); throw new Error("Session expired: log in again"); }
  if (options.text && res.ok) return res.text();
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message || `HTTP ${res.status}`);
  return body;
}

// h("div.card", {onclick, text, ...attrs}, ...children)
function h(spec, props, ...kids) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (props && (typeof props !== "object" || props instanceof Node || Array.isArray(props))) { kids.unshift(props); props = null; }
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className += (el.className ? " " : "") + v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "hidden") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, kids);
  return el;
}
function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}
const num = (n) => (n ?? 0).toLocaleString("en-US");
function usd(micros) {
  const m = micros || 0;
  return "$" + (m / 1e6).toFixed(Math.abs(m) >= 100000 ? 4 : 6);
}
function when(t) {
  if (!t) return "—";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}
function ago(t) {
  const s = Math.round((Date.now() - new Date(t)) / 1000);
  if (isNaN(s)) return "";
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
function dur(sec) {
  sec = Math.floor(sec || 0);
  const d = Math.floor(sec / 86400), hr = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60;
  return d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : m ? `${m}m ${sec % 60}s` : `${sec}s`;
}
const badge = (s, extra) => h("span.badge", { class: String(s || "").replace(/[^a-z_]/gi, "") + (extra ? " " + extra : ""), text: s ?? "—" });
const pretty = (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2));
const short = (id) => (id ? String(id).slice(0, 8) : "—");
function toast(msg, err) {
  const t = h("div.toast", { class: err ? "err" : "", role: err ? "alert" : "status", text: msg });
  $("#toasts").append(t);
  setTimeout(() => t.remove(), err ? 7000 : 3500);
}
function stat(k, v) { return h("div.stat", h("div.k", { text: k }), h("div.v", { text: v })); }
function table(cols, rows, opts = {}) {
  const thead = h("thead", h("tr", cols.map((c) => h("th", { class: c.num ? "num" : c.cls, scope: "col", text: c.label }))));
  const tbody = h("tbody");
  if (!rows.length) tbody.append(h("tr", h("td.empty", { colspan: cols.length, text: opts.empty || "Nothing here yet." })));
  for (const r of rows) {
    const tr = h("tr", cols.map((c) => h("td", { class: c.num ? "num" : c.cls }, c.get(r))));
    if (opts.onRow) {
      tr.className = "click"; tr.tabIndex = 0;
      tr.addEventListener("click", (e) => { if (!e.target.closest("button,a,input,select")) opts.onRow(r); });
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === tr) opts.onRow(r); });
    }
    tbody.append(tr);
  }
  return h("div.table-wrap", h("table", thead, tbody));
}
function copyBtn(value, label = "Copy") {
  return h("button.btn.sm.secondary", {
    type: "button", text: label, "aria-label": `${label} to clipboard`,
    onclick: async (e) => {
      try { await navigator.clipboard.writeText(value); }
      catch (_) { const ta = h("textarea", { value }); document.body.append(ta); ta.select(); document.execCommand("copy"); ta.remove(); }
      e.target.textContent = "Copied"; setTimeout(() => (e.target.textContent = label), 1500);
    },
  });
}
// A click handler for an async action: disables the button meanwhile and shows errors.
function act(fn) {
  return async (e) => {
    const b = e?.currentTarget;
    if (b) b.disabled = true;
    try { await fn(e); } catch (err) { toast(err.message, true); }
    finally { if (b && b.isConnected) b.disabled = false; }
  };
}
function debounce(fn, ms = 400) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
function field(label, input, hint) { return h("label", label, input, hint ? h("span.muted.small", { text: hint }) : null); }
function select(name, options, value) {
  return h("select", { name }, options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o || "any"];
    return h("option", { value: v, text: l, selected: String(v) === String(value ?? "") });
  }));
}
function pager(data, go) {
  const { total = 0, limit = 50, offset = 0 } = data;
  if (total <= limit) return null;
  return h("div.row", { class: "small" },
    h("button.btn.sm.secondary", { text: "← Newer", disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)) }),
    h("span.muted", { text: `${offset + 1}–${Math.min(offset + limit, total)} of ${total}` }),
    h("button.btn.sm.secondary", { text: "Older →", disabled: offset + limit >= total, onclick: () => go(offset + limit) }));
}
function errorCard(e) { return h("div.card", h("p.error", { role: "alert", text: e.message })); }

// ---------- auth ----------
function showAuth(id) {
  $("#auth").hidden = false; $("#shell").hidden = true;
  for (const s of document.querySelectorAll("#auth > section")) s.hidden = s.id !== id;
  for (const id2 of ["#logout", "#live", "#whoami", "#menu"]) $(id2).hidden = true;
}
function signOut() {
  token = false; me = null;
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  clearTimeout(retryTimer);
  if (current?.dispose) current.dispose();
  current = null;
  start();
}
async function start() {

  try {
    const status = await api("/api/auth/status");
    // A session cookie from an earlier visit may still be good.
    if (status.authenticated) { token = true; return enter(); }
    $("#setup-code-label").hidden = !status.setupCodeRequired;
    showAuth(status.setupRequired ? "setup" : "login");
  } catch (e) {
    $("#loading").textContent = `The gateway is not answering: ${e.message}`;
  }
}
function bindForm(form, path) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (!data.setupCode) delete data.setupCode;
    form.querySelector(".error").textContent = "";
    try {
      const session = await api(path, { method: "POST", body: data });
      token = true;
      form.reset();
      enter();
    } catch (e) {
      form.querySelector(".error").textContent = e.message;
    }
  });
}
async function enter() {
  try {
    me = await api("/api/auth/me");
  } catch (e) {
    if (!token) return;
    token = false;
    return start();
  }
  $("#auth").hidden = true; $("#shell").hidden = false;
  $("#whoami").textContent = me.username;
  for (const id of ["#logout", "#live", "#whoami", "#menu"]) $(id).hidden = false;
  connect();
  refreshPending();
  if (!location.hash.startsWith("#/")) location.replace("#/overview");
  else render();
}

// ---------- live events ----------
async function connect() {
  if (socket || !token) return;
  clearTimeout(retryTimer);
  try {
    const { ticket } = await api("/api/auth/ws-ticket", { method: "POST" });
    const proto = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${proto}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
  } catch (e) {
    setLive(false);
    if (token) retryTimer = setTimeout(connect, retryMs = Math.min(retryMs * 2, 30000));
    return;
  }
  socket.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    if (ev.event === "ws:ready") { retryMs = 1000; setLive(true); return; }
    onEvent(ev);
  };
  socket.onclose = () => {
    socket = null;
    setLive(false);
    if (token) retryTimer = setTimeout(connect, retryMs = Math.min(retryMs * 2, 30000));
  };
  socket.onerror = () => {};
}
function setLive(on) {
  const l = $("#live");
  l.textContent = on ? "● live" : "○ offline";
  l.classList.toggle("on", on);
  l.title = on ? "Receiving live events" : "Not connected; retrying";
}
const refreshPending = debounce(async () => {
  try {
    const d = await api("/api/approvals/stats");
    const c = $("#pending-count");
    c.textContent = d.pending; c.hidden = !d.pending;
    c.setAttribute("aria-label", `${d.pending} pending`);
  } catch (_) { /* shown elsewhere */ }
}, 200);
function onEvent(ev) {
  feed.unshift(ev);
  if (feed.length > 150) feed.pop();
  eventCounts[ev.event] = (eventCounts[ev.event] || 0) + 1;
  if (ev.event.startsWith("approval:")) refreshPending();
  if (ev.event === "approval:required") toast(`Approval needed: ${ev.payload?.toolName || "tool call"}`);
  if (ev.event === "budget:exceeded") toast(`Budget exceeded${ev.payload?.groupName ? ": " + ev.payload.groupName : ""}`, true);
  if (current?.onEvent) current.onEvent(ev);
}

// ---------- routing ----------
const views = {
  overview: viewOverview, runs: viewRuns, approvals: viewApprovals, tasks: viewTasks, usage: viewUsage,
  webhooks: viewWebhooks, groups: viewGroups, tools: viewTools,
  channels: viewChannels,
  scheduler: soon("Scheduler", "Run prompts and loop tasks on a schedule (cron)."),
  skills: soon("Skills", "Install custom tools (WebAssembly skills) and choose which groups may use them."),
};
function render() {
  if (!token || !me) return;
  const [tab = "overview", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const fn = views[tab] || views.overview;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  $("#nav").classList.remove("open");
  $("#menu").setAttribute("aria-expanded", "false");
  if (current?.dispose) current.dispose();
  current = null;
  const view = $("#view");
  view.replaceChildren();
  const seq = ++renderSeq;
  const ctx = { seq, alive: () => seq === renderSeq && !!token };
  current = fn(view, rest.map(decodeURIComponent), ctx) || null;
  document.title = `${$("#nav a[aria-current]")?.firstChild?.textContent.trim() || "Overview"} · Loop Gateway`;
}
function soon(title, text) {
  return (view) => {
    view.append(h("h2", { text: title }), h("div.card", h("p", h("span.badge.info", { text: "coming soon" })), h("p.muted", { text })));
  };
}
// Mount: a view section whose load() re-renders into it; events trigger a debounced reload.
function section(view, load, ctx) {
  const box = h("div");
  view.append(box);
  const run = async () => {
    try {
      const nodes = await load();
      if (ctx && !ctx.alive()) return;
      box.replaceChildren(...[nodes].flat().filter(Boolean));
    } catch (e) { if (!ctx || ctx.alive()) box.replaceChildren(errorCard(e)); }
  };
  run();
  return { el: box, reload: run, soon: debounce(run, 500) };
}

// ---------- Overview ----------
function viewOverview(view, _, ctx) {
  view.append(h("h2", { text: "Overview" }));
  const top = section(view, async () => {
    const today = new Date().toISOString().slice(0, 10);
    const [health, usage, pend] = await Promise.all([
      api("/api/health"), api(`/api/usage?from=${today}`), api("/api/approvals/stats"),
    ]);
    const restarts = health.actors.reduce((n, a) => n + a.restarts, 0);
    return [
      h("div.stats",
        stat("Tokens today", num(usage.inputTokens + usage.outputTokens + (usage.cacheCreationTokens || 0) + (usage.cacheReadTokens || 0))),
        stat("Cost today", usd(usage.costMicros)),
        stat("Model calls today", num(usage.calls)),
        stat("Runs running / queued", `${health.runs?.running ?? 0} / ${health.runs?.queued ?? 0}`),
        stat("Pending approvals", num(pend.pending))),
      h("div.card",
        h("div.head", h("h3", { text: "Health", style: "margin:0" }), badge(health.status === "ok" ? "ok" : health.status)),
        h("p.muted.small", { text: `Version ${health.version} · up ${dur(health.uptimeSeconds)} · database ${health.database?.ok ? "ok" : "not answering"} · ${health.actors.length} supervised actors, ${restarts} restart(s)` }),
        h("details", h("summary", { text: "Actors" }),
          table([
            { label: "Actor", get: (a) => a.name },
            { label: "Restarts", num: true, get: (a) => num(a.restarts) },
            { label: "Last restart reason", get: (a) => a.lastRestartReason || "—" },
          ], health.actors))),
    ];
  }, ctx);
  const runs = section(view, async () => {
    const d = await api("/api/runs?limit=8");
    return h("div.card", h("div.head", h("h3", { text: "Recent runs", style: "margin:0" }), h("a.small", { href: "#/runs", text: "All runs →" })),
      table([
        { label: "Run", get: (r) => h("a", { href: `#/runs/${r.id}`, text: short(r.id) }) },
        { label: "Status", get: (r) => badge(r.status) },
        { label: "Source", cls: "hide-sm", get: (r) => r.source },
        { label: "Input", cls: "hide-sm", get: (r) => h("span.ellip", { text: r.input || "" }) },
        { label: "Cost", num: true, get: (r) => usd(r.costMicros) },
        { label: "When", get: (r) => ago(r.createdAt) },
      ], d.items, { onRow: (r) => (location.hash = `#/runs/${r.id}`), empty: "No runs yet." }));
  }, ctx);
  const list = h("ol.feed", { "aria-live": "polite", "aria-label": "Live activity" });
  const counts = h("div.row");
  const drawCounts = () => {
    counts.replaceChildren(...Object.entries(eventCounts).sort().map(([k, v]) => h("span.badge", { text: `${k} ${v}` })));
  };
  const item = (ev) => h("li",
    h("strong", { text: ev.event }),
    h("time", { datetime: ev.timestamp, text: new Date(ev.timestamp || Date.now()).toLocaleTimeString() }),
    h("div.p", { text: summarize(ev) }));
  list.append(...feed.map(item));
  if (!feed.length) list.append(h("li.muted", { text: "Waiting for events… (runs, approvals, tasks, budgets and logins appear here as they happen)" }));
  drawCounts();
  view.append(h("div.card", h("h3", { text: "Live activity" }), counts, h("div", { style: "height:.6rem" }), list));
  return {
    onEvent(ev) {
      if (list.firstChild?.classList?.contains("muted")) list.replaceChildren();
      list.prepend(item(ev));
      while (list.children.length > 150) list.lastChild.remove();
      drawCounts();
      if (/^(agent:run|task:|approval:|budget:|actor:)/.test(ev.event)) top.soon();
      if (ev.event.startsWith("agent:run")) runs.soon();
    },
  };
}
function summarize(ev) {
  const p = ev.payload || {};
  const bits = [];
  for (const k of ["name", "channelType", "chat", "senderName", "sender", "text", "reply", "toolName", "riskLevel", "status", "ignoredReason", "source", "iteration", "stopReason", "code", "error", "username", "output", "input", "runId", "taskId", "approvalId"]) {
    if (p[k] !== undefined && p[k] !== null && p[k] !== "") bits.push(`${k}: ${typeof p[k] === "string" ? p[k].slice(0, 140) : JSON.stringify(p[k]).slice(0, 140)}`);
  }
  if (p.costMicros !== undefined) bits.push(`cost: ${usd(p.costMicros)}`);
  return bits.length ? bits.join(" · ") : JSON.stringify(p).slice(0, 300);
}

// ---------- Runs ----------
const RUN_STATUSES = ["", "queued", "running", "awaiting_approval", "complete", "error", "interrupted"];
function viewRuns(view, [id], ctx) {
  if (id) return viewRun(view, id, ctx);
  const q = new URLSearchParams(sessionStorage.getItem("lg-runs-filter") || "");
  let offset = 0;
  const form = h("form.row.end.card", { "aria-label": "Filter runs" },
    field("Status", select("status", RUN_STATUSES, q.get("status"))),
    field("Source", h("input", { name: "source", value: q.get("source") || "", placeholder: "e.g. webhook, task", list: "run-sources" })),
    h("datalist", { id: "run-sources" }, ["webhook", "task", "api", "channel", "scheduler"].map((s) => h("option", { value: s }))),
    h("button.btn", { type: "submit", text: "Filter" }),
    h("button.btn.secondary", { type: "button", text: "Clear", onclick: () => { form.reset(); form.elements.status.value = ""; form.elements.source.value = ""; apply(); } }));
  const apply = () => { offset = 0; sessionStorage.setItem("lg-runs-filter", new URLSearchParams(new FormData(form)).toString()); list.reload(); };
  form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
  view.append(h("div.head", h("h2", { text: "Runs" })), form);
  const list = section(view, async () => {
    const p = new URLSearchParams({ limit: 50, offset });
    const fe = form.elements;
    if (fe.status.value) p.set("status", fe.status.value);
    if (fe.source.value.trim()) p.set("source", fe.source.value.trim());
    const d = await api(`/api/runs?${p}`);
    return [table([
      { label: "Run", get: (r) => h("a", { href: `#/runs/${r.id}`, text: short(r.id) }) },
      { label: "Status", get: (r) => badge(r.status) },
      { label: "Source", cls: "hide-sm", get: (r) => r.source },
      { label: "Input", cls: "hide-sm", get: (r) => h("span.ellip", { text: r.input || "", title: r.input || "" }) },
      { label: "Tokens", num: true, get: (r) => num(r.inputTokens + r.outputTokens) },
      { label: "Cost", num: true, get: (r) => usd(r.costMicros) },
      { label: "Created", cls: "hide-sm", get: (r) => h("span", { title: when(r.createdAt), text: ago(r.createdAt) }) },
    ], d.items, { onRow: (r) => (location.hash = `#/runs/${r.id}`), empty: "No runs match." }),
    pager(d, (o) => { offset = o; list.reload(); })];
  }, ctx);
  return { onEvent(ev) { if (ev.event.startsWith("agent:run") || ev.event.startsWith("approval:")) list.soon(); } };
}
function viewRun(view, id, ctx) {
  view.append(h("p", h("a", { href: "#/runs", text: "← All runs" })));
  const sec = section(view, async () => {
    const [r, appr] = await Promise.all([api(`/api/runs/${encodeURIComponent(id)}`), api(`/api/approvals/run/${encodeURIComponent(id)}`).catch(() => ({ items: [] }))]);
    const approvals = appr.items || appr || [];
    const out = [
      h("div.head", h("h2", { text: `Run ${short(r.id)}` }), badge(r.status)),
      h("div.stats",
        stat("Tokens in / out", `${num(r.inputTokens)} / ${num(r.outputTokens)}`),
        stat("Cost", usd(r.costMicros)),
        stat("Model calls", num(r.llmCalls ?? r.llmCallsDetail?.length)),
        stat("Tool calls", num(r.toolCalls?.length))),
      h("div.card",
        h("div.grid2",
          kv("Id", r.id), kv("Source", r.source), kv("Model", r.model), kv("Stop reason", r.stopReason),
          kv("Group", r.groupId), kv("Conversation", r.conversationId),
          kv("Started", when(r.startedAt || r.createdAt)),
          kv("Finished", r.finishedAt ? `${when(r.finishedAt)} (${((new Date(r.finishedAt) - new Date(r.startedAt || r.createdAt)) / 1000).toFixed(2)} s)` : "—")),
        h("h3", { text: "Input" }), h("pre", { text: r.input ?? "" }),
        r.output != null ? [h("h3", { text: "Output" }), h("pre", { text: r.output })] : null,
        r.error ? [h("h3", { text: `Error${r.errorCode ? " (" + r.errorCode + ")" : ""}` }), h("pre.error", { text: r.error })] : null),
      h("h3", { text: "Model calls" }),
      table([
        { label: "#", get: (c, i) => c.id },
        { label: "Model", get: (c) => `${c.provider || ""} ${c.model || ""}` },
        { label: "Status", get: (c) => [badge(c.status), c.error ? h("div.error.small", { text: c.error }) : null] },
        { label: "In", num: true, get: (c) => num(c.inputTokens) },
        { label: "Out", num: true, get: (c) => num(c.outputTokens) },
        { label: "Cache", num: true, cls: "hide-sm", get: (c) => num((c.cacheCreationTokens || 0) + (c.cacheReadTokens || 0)) },
        { label: "Cost", num: true, get: (c) => usd(c.costMicros) },
        { label: "Latency", num: true, get: (c) => `${num(c.latencyMs)} ms` },
      ], r.llmCallsDetail || [], { empty: "No model calls." }),
      h("h3", { text: "Tool calls" }),
    ];
    const tc = r.toolCalls || [];
    if (!tc.length) out.push(h("div.card.muted", { text: "No tool calls." }));
    for (const t of tc) {
      out.push(h("div.card",
        h("div.head", h("strong", { text: t.toolName || t.name || "tool" }),
          h("span.row", t.isError ? badge("error") : badge("ok"), h("span.muted.small", { text: t.durationMs != null ? `${num(t.durationMs)} ms` : "" }))),
        h("details", { open: true }, h("summary", { text: "Input" }), h("pre", { text: pretty(t.input) })),
        h("details", { open: true }, h("summary", { text: "Output" }), h("pre", { class: t.isError ? "error" : "", text: pretty(t.output ?? "") }))));
    }
    if (approvals.length) {
      out.push(h("h3", { text: "Approvals" }), approvalTable(approvals));
    }
    return out;
  }, ctx);
  return { onEvent(ev) { if (JSON.stringify(ev.payload || {}).includes(id)) sec.soon(); } };
}
function kv(k, v) { return h("div", h("div.muted.small", { text: k }), h("div", { style: "overflow-wrap:anywhere", text: v ?? "—" })); }

// ---------- Approvals ----------
function approvalTable(items) {
  return table([
    { label: "Tool", get: (a) => a.toolName },
    { label: "Risk", get: (a) => badge(a.riskLevel) },
    { label: "Status", get: (a) => badge(a.status) },
    { label: "Decided by", cls: "hide-sm", get: (a) => a.decidedBy || "—" },
    { label: "Reason", cls: "hide-sm", get: (a) => a.decisionReason || "—" },
    { label: "Run", get: (a) => (a.runId ? h("a", { href: `#/runs/${a.runId}`, text: short(a.runId) }) : "—") },
    { label: "When", cls: "hide-sm", get: (a) => h("span", { title: when(a.decidedAt || a.createdAt), text: ago(a.decidedAt || a.createdAt) }) },
  ], items, { empty: "No decisions yet." });
}
function viewApprovals(view, _, ctx) {
  view.append(h("h2", { text: "Approvals" }));
  const reasons = {};   // typed reasons survive live reloads of the pending list
  const stats = section(view, async () => {
    const s = await api("/api/approvals/stats");
    return h("div.stats", stat("Pending", num(s.pending)), stat("Approved", num(s.approved)), stat("Rejected", num(s.rejected)), stat("Expired", num(s.expired)));
  }, ctx);
  view.append(h("h3", { text: "Waiting for a decision" }));
  const pending = section(view, async () => {
    const d = await api("/api/approvals?status=pending&limit=100");
    if (!d.items.length) return h("div.card.muted", { text: "No tool call is waiting. New requests appear here instantly." });
    return d.items.map(pendingCard);
  }, ctx);
  const pendingCard = (a) => {
    const reason = h("input", { name: "reason", placeholder: "Reason (optional)", maxlength: 500, "aria-label": `Reason for ${a.toolName}`, value: reasons[a.id] || "",
      oninput: (e) => (reasons[a.id] = e.target.value) });
    const decide = (what) => act(async () => {
      const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
      await api(`/api/approvals/${encodeURIComponent(a.id)}/${what}`, { method: "POST", body });
      toast(`${what === "approve" ? "Approved" : "Rejected"} ${a.toolName}`);
      pending.reload(); stats.reload(); history.reload(); refreshPending();
    });
    const left = h("span.muted.small");
    const tick = () => {
      const s = Math.round((new Date(a.expiresAt) - Date.now()) / 1000);
      left.textContent = s > 0 ? `expires in ${dur(s)} (then ${a.timeoutAction})` : "expired";
    };
    tick(); const iv = setInterval(() => (left.isConnected ? tick() : clearInterval(iv)), 1000);
    return h("div.card", { style: "border-left:4px solid #f08c00" },
      h("div.head", h("span.row", h("strong", { text: a.toolName }), badge(a.riskLevel)), left),
      h("pre", { text: pretty(a.input) }),
      a.reason ? h("p.muted.small", { text: a.reason }) : null,
      h("p.small.muted", "Run ", a.runId ? h("a", { href: `#/runs/${a.runId}`, text: short(a.runId) }) : "—", ` · requested ${when(a.createdAt)}`),
      h("div.row", reason, h("button.btn.ok", { text: "Approve", onclick: decide("approve") }), h("button.btn.danger", { text: "Reject", onclick: decide("reject") })));
  };
  view.append(h("h3", { text: "History" }));
  const history = section(view, async () => {
    const d = await api("/api/approvals?limit=50");
    return approvalTable(d.items.filter((a) => a.status !== "pending"));
  }, ctx);
  view.append(h("h3", { text: "Rules" }), h("p.muted.small", { text: "Every tool has an effective rule. Defaults: approval needed from high risk up; timeouts 60/120/300/600 s by risk; a timed-out call is rejected unless the rule says approve." }));
  const rules = section(view, async () => {
    const [d, tools] = await Promise.all([api("/api/approval-rules"), api("/api/tools").catch(() => ({ items: [] }))]);
    const known = new Set(d.items.map((r) => r.toolName));
    const row = (r, isNew) => {
      const f = {
        toolName: isNew ? h("input", { name: "toolName", required: true, placeholder: "tool name", list: "tool-names", "aria-label": "Tool name" }) : null,
        riskLevel: select("riskLevel", ["low", "medium", "high", "critical"], r.riskLevel || "medium"),
        requireApproval: h("input", { type: "checkbox", name: "requireApproval", checked: r.requireApproval }),
        timeoutSeconds: h("input", { type: "number", name: "timeoutSeconds", min: 1, value: r.timeoutSeconds ?? "", style: "width:6rem", placeholder: "default" }),
        timeoutAction: select("timeoutAction", ["reject", "approve"], r.timeoutAction || "reject"),
      };
      f.riskLevel.setAttribute("aria-label", "Risk level");
      f.timeoutSeconds.setAttribute("aria-label", "Timeout seconds");
      f.timeoutAction.setAttribute("aria-label", "Timeout action");
      f.requireApproval.setAttribute("aria-label", "Require approval");
      const save = act(async () => {
        const name = isNew ? f.toolName.value.trim() : r.toolName;
        if (!name) throw new Error("Enter a tool name");
        const body = { toolName: name, riskLevel: f.riskLevel.value, requireApproval: f.requireApproval.checked, timeoutAction: f.timeoutAction.value };
        if (f.timeoutSeconds.value) body.timeoutSeconds = Number(f.timeoutSeconds.value);
        if (!isNew && r.autoApprove) body.autoApprove = r.autoApprove;
        await api("/api/approval-rules", { method: "POST", body });
        toast(`Rule for ${name} saved`); rules.reload();
      });
      return h("tr",
        h("td", isNew ? f.toolName : h("strong", { text: r.toolName })),
        h("td", f.riskLevel), h("td", f.requireApproval), h("td", f.timeoutSeconds), h("td", f.timeoutAction),
        h("td", isNew ? h("span.muted.small", { text: "new" }) : [badge(r.source, r.source === "default" ? "" : "info"), r.autoApprove ? h("div.small.muted", { text: "auto-approve: " + JSON.stringify(r.autoApprove) }) : null]),
        h("td", h("div.row",
          h("button.btn.sm", { text: isNew ? "Add" : "Save", onclick: save }),
          !isNew && r.source !== "default" ? h("button.btn.sm.secondary", {
            text: "Reset", title: "Restore the default rule",
            onclick: act(async () => { await api(`/api/approval-rules/${encodeURIComponent(r.toolName)}`, { method: "DELETE" }); toast(`Rule for ${r.toolName} reset`); rules.reload(); }),
          }) : null)));
    };
    const tbody = h("tbody", d.items.map((r) => row(r, false)), row({ riskLevel: "high", requireApproval: true }, true));
    return [
      h("datalist", { id: "tool-names" }, (tools.items || []).filter((t) => !known.has(t.name)).map((t) => h("option", { value: t.name }))),
      h("div.table-wrap", h("table",
        h("thead", h("tr", ["Tool", "Risk", "Approval", "Timeout (s)", "On timeout", "Source", ""].map((t) => h("th", { scope: "col", text: t })))),
        tbody)),
    ];
  }, ctx);
  return {
    onEvent(ev) {
      if (ev.event.startsWith("approval:")) { stats.soon(); pending.reload(); history.soon(); }
    },
  };
}

// ---------- Loop tasks ----------
function viewTasks(view, [id], ctx) {
  if (id) return viewTask(view, id, ctx);
  const formBox = h("div", { hidden: true });
  const toggle = h("button.btn", { text: "+ New Task", "aria-expanded": "false", "aria-controls": "task-form" });
  toggle.addEventListener("click", async () => {
    formBox.hidden = !formBox.hidden;
    toggle.setAttribute("aria-expanded", String(!formBox.hidden));
    if (!formBox.hidden) { if (!formBox.firstChild) formBox.append(await taskForm()); $("input", formBox)?.focus(); }
  });
  const taskForm = async () => {
    const groups = await api("/api/agent-groups?limit=200").catch(() => ({ items: [] }));
    const form = h("form.card.stack", { id: "task-form" },
      h("h3", { text: "New loop task" }),
      h("div.grid2",
        field("Name", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_\\-]+", maxlength: 64, placeholder: "weekly-report" }), "Letters, digits, - and _"),
        field("Max iterations", h("input", { name: "maxIterations", type: "number", min: 1, max: 1000, value: 10 })),
        field("Agent group", select("groupId", [["", "default (no group)"], ...groups.items.map((g) => [g.id, g.name])], "")),
        field("Completion signal", h("input", { name: "completionSignal", placeholder: "TASK_COMPLETE" }))),
      field("Prompt", h("textarea", { name: "prompt", required: true, rows: 6, placeholder: "What should the agent work on, iteration after iteration?" })),
      h("div.row", h("button.btn", { type: "submit", text: "Create and start" }), h("button.btn.secondary", { type: "button", text: "Cancel", onclick: () => toggle.click() })),
      h("p.error", { role: "alert" }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      const body = { name: f.name.trim(), prompt: f.prompt, maxIterations: Number(f.maxIterations) || 10 };
      if (f.groupId) body.groupId = f.groupId;
      if (f.completionSignal.trim()) body.completionSignal = f.completionSignal.trim();
      $(".error", form).textContent = "";
      try {
        const t = await api("/api/tasks", { method: "POST", body });
        if (t.status !== "running" && t.status !== "pending" && t.status !== "queued") await api(`/api/tasks/${t.id}/start`, { method: "POST" }).catch(() => {});
        toast(`Task ${t.name} started`);
        location.hash = `#/tasks/${t.id}`;
      } catch (err) { $(".error", form).textContent = err.message; }
    });
    return form;
  };
  view.append(h("div.head", h("h2", { text: "Loop tasks" }), toggle), formBox);
  let offset = 0;
  const list = section(view, async () => {
    const d = await api(`/api/tasks?limit=50&offset=${offset}`);
    return [table([
      { label: "Name", get: (t) => h("a", { href: `#/tasks/${t.id}`, text: t.name }) },
      { label: "Status", get: (t) => badge(t.status) },
      { label: "Progress", get: (t) => progress(t) },
      { label: "Tokens", num: true, cls: "hide-sm", get: (t) => num(t.inputTokens + t.outputTokens) },
      { label: "Cost", num: true, get: (t) => usd(t.costMicros) },
      { label: "Updated", cls: "hide-sm", get: (t) => h("span", { title: when(t.updatedAt), text: ago(t.updatedAt) }) },
      { label: "", get: (t) => taskButtons(t, () => list.reload()) },
    ], d.items, { onRow: (t) => (location.hash = `#/tasks/${t.id}`), empty: "No loop tasks yet. Use “+ New Task”." }),
    pager(d, (o) => { offset = o; list.reload(); })];
  }, ctx);
  return { onEvent(ev) { if (ev.event.startsWith("task:")) list.soon(); } };
}
const isActive = (t) => ["running", "pending", "queued"].includes(t.status);
function progress(t) {
  const pct = Math.min(100, Math.round(((t.currentIteration || 0) / (t.maxIterations || 1)) * 100));
  return h("div", { style: "min-width:7rem" },
    h("div.small", { text: `${t.currentIteration || 0} / ${t.maxIterations}` }),
    h("div.bar", { role: "progressbar", "aria-valuemin": 0, "aria-valuemax": t.maxIterations, "aria-valuenow": t.currentIteration || 0, "aria-label": "Iterations" },
      h("span", { style: `width:${pct}%` })));
}
function taskButtons(t, after) {
  const go = (what) => act(async () => { await api(`/api/tasks/${t.id}/${what}`, { method: "POST" }); toast(`Task ${t.name}: ${what}`); after(); });
  return h("div.row",
    isActive(t) ? h("button.btn.sm.secondary", { text: "Stop", onclick: go("stop") })
      : h("button.btn.sm.secondary", { text: t.status === "pending" ? "Start" : "Continue", onclick: go("start") }),
    h("button.btn.sm.danger", {
      text: "Delete", "aria-label": `Delete task ${t.name}`,
      onclick: act(async () => {
        if (!confirm(`Delete task “${t.name}” and its files?`)) return;
        await api(`/api/tasks/${t.id}`, { method: "DELETE" });
        toast(`Task ${t.name} deleted`);
        if (location.hash.startsWith("#/tasks/")) location.hash = "#/tasks"; else after();
      }),
    }));
}
function viewTask(view, id, ctx) {
  view.append(h("p", h("a", { href: "#/tasks", text: "← All tasks" })));
  const outPre = h("pre", { style: "max-height:32rem", "aria-live": "off", text: "Loading…" });
  let active = false;
  const top = section(view, async () => {
    const t = await api(`/api/tasks/${encodeURIComponent(id)}`);
    active = isActive(t);
    loadOut();
    return [
      h("div.head", h("h2", { text: t.name }), h("span.row", badge(t.status), taskButtons(t, () => { top.reload(); loadOut(); }))),
      h("div.stats",
        h("div.stat", h("div.k", { text: "Iterations" }), progress(t)),
        stat("Tokens", num(t.inputTokens + t.outputTokens)),
        stat("Cost", usd(t.costMicros)),
        stat("Stop reason", t.stopReason || (active ? "running…" : "—"))),
      t.error ? h("div.card", h("p.error", { text: t.error })) : null,
      h("details.card", h("summary", { text: "Prompt" }), promptBox(id)),
      h("h3", { text: "Iterations" }),
      table([
        { label: "#", get: (i) => i.iteration },
        { label: "Run", get: (i) => (i.runId ? h("a", { href: `#/runs/${i.runId}`, text: short(i.runId) }) : "—") },
        { label: "Tokens", num: true, get: (i) => num(i.inputTokens + i.outputTokens) },
        { label: "Cost", num: true, get: (i) => usd(i.costMicros) },
        { label: "Tools", num: true, cls: "hide-sm", get: (i) => num(i.toolCalls) },
        { label: "Time", num: true, cls: "hide-sm", get: (i) => `${num(i.durationMs)} ms` },
        { label: "Output", cls: "hide-sm", get: (i) => h("span.ellip", { text: i.output || "", title: (i.output || "").slice(0, 500) }) },
      ], t.iterations || [], { empty: "No iteration finished yet." }),
    ];
  }, ctx);
  const outStatus = h("span.muted.small");
  view.append(h("div.card", h("div.head", h("h3", { text: "Output (output.md)", style: "margin:0" }), h("span.row", outStatus, h("button.btn.sm.secondary", { text: "Refresh", onclick: () => loadOut() }))), outPre));
  const loadOut = async () => {
    try {
      const text = await api(`/api/tasks/${encodeURIComponent(id)}/output`, { text: true });
      if (!ctx.alive()) return;
      const atBottom = outPre.scrollTop + outPre.clientHeight >= outPre.scrollHeight - 10;
      outPre.textContent = text.trim() ? text : "(no output yet)";
      if (atBottom) outPre.scrollTop = outPre.scrollHeight;
      outStatus.textContent = `updated ${new Date().toLocaleTimeString()}${active ? " · refreshing while it runs" : ""}`;
    } catch (e) { outPre.textContent = e.message; }
  };
  const iv = setInterval(() => { if (active) { loadOut(); } }, 3000);
  return {
    onEvent(ev) {
      const p = ev.payload || {};
      if (ev.event.startsWith("task:") && (p.taskId === id || p.id === id || !p.taskId)) top.soon();
    },
    dispose() { clearInterval(iv); },
  };
}
function promptBox(id) {
  const pre = h("pre", { text: "Loading…" });
  api(`/api/tasks/${encodeURIComponent(id)}/prompt`, { text: true }).then((t) => (pre.textContent = t), (e) => (pre.textContent = e.message));
  return pre;
}

// ---------- Usage ----------
function viewUsage(view, _, ctx) {
  let days = Number(sessionStorage.getItem("lg-usage-days")) || 30;
  const range = h("div.row", { role: "group", "aria-label": "Range" }, [7, 30, 90].map((d) =>
    h("button.btn.sm", { class: d === days ? "" : "secondary", "aria-pressed": String(d === days), text: `${d} days`,
      onclick: () => { sessionStorage.setItem("lg-usage-days", d); render(); } })));
  view.append(h("div.head", h("h2", { text: "Usage" }), range));
  const sec = section(view, async () => {
    const from = new Date(Date.now() - (days - 1) * 86400000).toISOString().slice(0, 10);
    const q = `from=${from}`;
    const [tot, daily, models, calls] = await Promise.all([
      api(`/api/usage?${q}`), api(`/api/usage/daily?${q}`), api(`/api/usage/models?${q}`), api(`/api/usage/calls?${q}&limit=25`),
    ]);
    const series = fillDays(daily.items, from, days);
    return [
      h("div.stats",
        stat("Model calls", num(tot.calls)), stat("Input tokens", num(tot.inputTokens)), stat("Output tokens", num(tot.outputTokens)),
        stat("Cost", usd(tot.costMicros)), stat("Errors", num(tot.errors))),
      h("div.cols",
        h("div.card", h("h3", { text: "Tokens per day" }),
          h("div.legend", h("span", h("i.sw", { style: "background:#3b5bdb" }), "input"), h("span", h("i.sw", { style: "background:#91a7ff" }), "output")),
          barChart(series, [(d) => d.inputTokens || 0, (d) => d.outputTokens || 0], ["#3b5bdb", "#91a7ff"], num, "Tokens per day")),
        h("div.card", h("h3", { text: "Cost per day" }),
          h("div.legend", h("span", h("i.sw", { style: "background:#2b8a3e" }), "USD")),
          barChart(series, [(d) => d.costMicros || 0], ["#2b8a3e"], usd, "Cost per day"))),
      h("h3", { text: "By model" }),
      table([
        { label: "Model", get: (m) => m.model },
        { label: "Calls", num: true, get: (m) => num(m.calls) },
        { label: "Input", num: true, get: (m) => num(m.inputTokens) },
        { label: "Output", num: true, get: (m) => num(m.outputTokens) },
        { label: "Cache", num: true, cls: "hide-sm", get: (m) => num((m.cacheCreationTokens || 0) + (m.cacheReadTokens || 0)) },
        { label: "Errors", num: true, cls: "hide-sm", get: (m) => num(m.errors) },
        { label: "Cost", num: true, get: (m) => usd(m.costMicros) },
      ], models.items, { empty: "No model calls in this range." }),
      h("h3", { text: "Recent calls" }),
      table([
        { label: "When", get: (c) => h("span", { title: when(c.createdAt), text: ago(c.createdAt) }) },
        { label: "Model", cls: "hide-sm", get: (c) => c.model },
        { label: "Status", get: (c) => badge(c.status) },
        { label: "Tokens", num: true, get: (c) => num(c.inputTokens + c.outputTokens) },
        { label: "Cost", num: true, get: (c) => usd(c.costMicros) },
        { label: "Latency", num: true, cls: "hide-sm", get: (c) => `${num(c.latencyMs)} ms` },
        { label: "Run", get: (c) => (c.runId ? h("a", { href: `#/runs/${c.runId}`, text: short(c.runId) }) : "—") },
      ], calls.items, { empty: "No calls." }),
    ];
  }, ctx);
  return { onEvent(ev) { if (ev.event === "agent:run:complete" || ev.event === "agent:run:error" || ev.event === "task:iteration") sec.soon(); } };
}
function fillDays(items, from, days) {
  const by = Object.fromEntries(items.map((d) => [d.date, d]));
  const out = [];
  const start = new Date(from + "T00:00:00Z");
  for (let i = 0; i < days; i++) {
    const d = new Date(start.getTime() + i * 86400000).toISOString().slice(0, 10);
    out.push(by[d] || { date: d });
  }
  return out;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}
// A stacked bar chart: one bar per day, one segment per getter.
function barChart(series, getters, colors, fmt, title) {
  const W = 600, H = 200, L = 58, B = 22, T = 10, R = 6;
  const totals = series.map((d) => getters.reduce((n, g) => n + g(d), 0));
  const max = Math.max(1, ...totals);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${title}: total ${fmt(totals.reduce((a, b) => a + b, 0))}` });
  const ih = H - B - T, iw = W - L - R, bw = iw / series.length;
  for (let i = 0; i <= 4; i++) {
    const y = T + ih - (ih * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#e4e7ec" }), s("text", { x: L - 6, y: y + 3, "text-anchor": "end" }, fmt(Math.round((max * i) / 4))));
  }
  series.forEach((d, i) => {
    let y = T + ih;
    const g = s("g");
    getters.forEach((get, j) => {
      const v = get(d), hgt = (v / max) * ih;
      if (v > 0) { y -= hgt; g.append(s("rect", { x: L + i * bw + bw * 0.15, y, width: Math.max(1, bw * 0.7), height: Math.max(hgt, 1), rx: 2, fill: colors[j] })); }
    });
    g.append(s("title", {}, `${d.date}: ${fmt(totals[i])}`));
    svg.append(g);
    const every = Math.ceil(series.length / 8);
    if (i % every === 0 || i === series.length - 1) svg.append(s("text", { x: L + i * bw + bw / 2, y: H - 6, "text-anchor": "middle" }, d.date.slice(5)));
  });
  return svg;
}

// ---------- Webhooks ----------
function viewWebhooks(view, _, ctx) {
  let eventNames = [];
  const secretBox = h("div");
  const showSecrets = (w, verb) => {
    const url = `${location.origin}/webhook/invoke/${w.token}`;
    secretBox.replaceChildren(h("div.card.secret", { role: "status" },
      h("div.head", h("h3", { text: `Webhook “${w.name}” ${verb}`, style: "margin:0" }), h("button.btn.sm.secondary", { text: "Dismiss", onclick: () => secretBox.replaceChildren() })),
      h("p.small", h("strong", { text: "Copy these now: " }), "the token and signing secret are shown only once."),
      line("Invoke URL", url), line("Token", w.token), line("Signing secret", w.signingSecret),
      h("details", h("summary", { text: "Try it with curl" }),
        h("pre", { text: `curl -X POST ${url} \\\n  -H 'content-type: application/json' \\\n  -d '{"message":"hi","sync":true}'` }))));
    secretBox.scrollIntoView({ behavior: "smooth", block: "nearest" });
  };
  const line = (k, v) => h("div", h("div.muted.small", { text: k }), h("div.copyline", h("code", { text: v ?? "" }), copyBtn(v ?? "")));
  const eventsPicker = (selected = ["*"]) => {
    const all = selected.includes("*");
    const allBox = h("input", { type: "checkbox", name: "ev-all", checked: all });
    const boxes = eventNames.map((e) => h("label.inline", { title: e.description }, h("input", { type: "checkbox", name: "ev", value: e.name, checked: all || selected.includes(e.name), disabled: all }), e.name));
    allBox.addEventListener("change", () => boxes.forEach((b) => { const i = $("input", b); i.disabled = allBox.checked; i.checked = allBox.checked; }));
    return h("fieldset.card", { style: "margin:0" }, h("legend", { text: "Events (outbound deliveries)" }),
      h("label.inline", allBox, h("strong", { text: "All events (*)" })), h("div.row", { style: "margin-top:.4rem" }, boxes));
  };
  const readEvents = (form) => (form.elements["ev-all"].checked ? ["*"] : [...form.querySelectorAll("input[name=ev]:checked")].map((i) => i.value));
  const createForm = () => {
    const form = h("form.card.stack", { "aria-label": "Create webhook" },
      h("h3", { text: "New webhook" }),
      h("div.grid2",
        field("Name", h("input", { name: "name", required: true, maxlength: 100, placeholder: "n8n support flow" })),
        field("Platform", select("platform", ["generic", "n8n", "make"], "generic")),
        field("Target URL (optional)", h("input", { name: "targetUrl", type: "url", placeholder: "https://… receives events" }))),
      eventsPicker(["*"]),
      h("div.row", h("button.btn", { type: "submit", text: "Create webhook" })),
      h("p.error", { role: "alert" }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const fe = form.elements;
      const body = { name: fe.name.value.trim(), platform: fe.platform.value, events: readEvents(form) };
      if (fe.targetUrl.value.trim()) body.targetUrl = fe.targetUrl.value.trim();
      $(".error", form).textContent = "";
      try {
        const w = await api("/api/webhooks", { method: "POST", body });
        form.reset(); formBox.hidden = true; toggle.setAttribute("aria-expanded", "false");
        showSecrets(w, "created"); list.reload();
      } catch (err) { $(".error", form).textContent = err.message; }
    });
    return form;
  };
  const formBox = h("div", { hidden: true });
  const toggle = h("button.btn", { text: "+ New webhook", "aria-expanded": "false",
    onclick: () => { formBox.hidden = !formBox.hidden; toggle.setAttribute("aria-expanded", String(!formBox.hidden)); if (!formBox.hidden) { if (!formBox.firstChild) formBox.append(createForm()); $("input", formBox).focus(); } } });
  view.append(h("div.head", h("h2", { text: "Webhooks" }), toggle), secretBox, formBox);
  const card = (w) => {
    const body = h("div");
    const logs = h("div");
    const edit = () => {
      const form = h("form.stack", { "aria-label": `Edit ${w.name}` },
        h("div.grid2",
          field("Name", h("input", { name: "name", required: true, value: w.name })),
          field("Platform", select("platform", ["generic", "n8n", "make"], w.platform)),
          field("Target URL", h("input", { name: "targetUrl", type: "url", value: w.targetUrl || "", placeholder: "none" }))),
        h("label.inline", h("input", { type: "checkbox", name: "enabled", checked: w.enabled }), "Enabled"),
        eventsPicker(w.events || ["*"]),
        h("div.row", h("button.btn", { type: "submit", text: "Save" }), h("button.btn.secondary", { type: "button", text: "Cancel", onclick: () => list.reload() })),
        h("p.error", { role: "alert" }));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        try {
          await api(`/api/webhooks/${w.id}`, { method: "PUT", body: {
            name: form.elements.name.value.trim(), platform: form.elements.platform.value, enabled: form.elements.enabled.checked,
            events: readEvents(form), targetUrl: form.elements.targetUrl.value.trim() || null } });
          toast(`Webhook ${w.name} saved`); list.reload();
        } catch (err) { $(".error", form).textContent = err.message; }
      });
      body.replaceChildren(form);
      $("input", form).focus();
    };
    const showLogs = act(async () => {
      if (logs.firstChild) return logs.replaceChildren();
      const d = await api(`/api/webhooks/${w.id}/logs?limit=50`);
      logs.replaceChildren(h("h3", { text: "Delivery log" }), table([
        { label: "When", get: (l) => h("span", { title: when(l.createdAt), text: ago(l.createdAt) }) },
        { label: "Direction", get: (l) => l.direction },
        { label: "Event", cls: "hide-sm", get: (l) => l.event || "—" },
        { label: "Status", get: (l) => badge(l.statusCode == null ? "—" : String(l.statusCode), l.statusCode >= 200 && l.statusCode < 300 ? "ok" : "error") },
        { label: "Detail", get: (l) => h("span.ellip", { text: l.detail || "", title: l.detail || "" }) },
        { label: "Time", num: true, cls: "hide-sm", get: (l) => (l.durationMs != null ? `${num(l.durationMs)} ms` : "—") },
      ], d.items, { empty: "No deliveries or invocations yet." }));
    });
    body.append(
      h("div.grid2",
        kv("Platform", w.platform), kv("Events", (w.events || []).join(", ")), kv("Target URL", w.targetUrl || "none (inbound only)"),
        kv("Token", `…${w.tokenHint || ""}`)),
      h("div.row", { style: "margin-top:.8rem" },
        h("button.btn.sm.secondary", { text: "Edit", onclick: edit }),
        h("button.btn.sm.secondary", { text: w.enabled ? "Disable" : "Enable",
          onclick: act(async () => { await api(`/api/webhooks/${w.id}`, { method: "PUT", body: { enabled: !w.enabled } }); list.reload(); }) }),
        h("button.btn.sm.secondary", { text: "Logs", onclick: showLogs }),
        h("button.btn.sm.secondary", { text: "Rotate secrets",
          onclick: act(async () => {
            if (!confirm(`Rotate the token and signing secret of “${w.name}”? The old ones stop working.`)) return;
            const r = await api(`/api/webhooks/${w.id}/rotate`, { method: "POST" });
            showSecrets({ ...w, ...r }, "rotated"); list.reload();
          }) }),
        h("button.btn.sm.danger", { text: "Delete",
          onclick: act(async () => { if (!confirm(`Delete webhook “${w.name}”?`)) return; await api(`/api/webhooks/${w.id}`, { method: "DELETE" }); toast("Webhook deleted"); list.reload(); }) })));
    return h("div.card", h("div.head", h("strong", { text: w.name }), badge(w.enabled ? "enabled" : "disabled", w.enabled ? "ok" : "")), body, logs);
  };
  const list = section(view, async () => {
    const [d, ev] = await Promise.all([api("/api/webhooks?limit=200"), eventNames.length ? eventNames : api("/api/webhooks/events").catch(() => [])]);
    eventNames = Array.isArray(ev) ? ev : ev.items || [];
    if (!d.items.length) return h("div.card.muted", { text: "No webhooks yet. Create one to invoke the agent from n8n, Make or any HTTP client." });
    return d.items.map(card);
  }, ctx);
  return {};
}

// ---------- Agent groups ----------
function viewGroups(view, _, ctx) {
  const formBox = h("div");
  const toggle = h("button.btn", { text: "+ New group", onclick: () => openForm(null) });
  view.append(h("div.head", h("h2", { text: "Agent groups" }), toggle), formBox);
  let tools = null;
  const openForm = async (g) => {
    tools = tools || (await api("/api/tools").catch(() => ({ items: [] }))).items;
    const numIn = (name, v) => h("input", { name, type: "number", min: 1, value: v ?? "", placeholder: "no cap" });
    const allSkills = !g || g.skills == null;
    const allBox = h("input", { type: "checkbox", name: "skills-all", checked: allSkills });
    const skillBoxes = tools.map((t) => h("label.inline", h("input", { type: "checkbox", name: "skill", value: t.name, checked: allSkills || g.skills.includes(t.name), disabled: allSkills }), t.name));
    allBox.addEventListener("change", () => skillBoxes.forEach((b) => ($("input", b).disabled = allBox.checked)));
    const form = h("form.card.stack", { "aria-label": g ? `Edit ${g.name}` : "New agent group" },
      h("h3", { text: g ? `Edit “${g.name}”` : "New agent group" }),
      h("div.grid2",
        field("Name", h("input", { name: "name", required: true, value: g?.name || "" })),
        field("Model", h("input", { name: "model", value: g?.model || "", placeholder: "claude-sonnet-4-5" })),
        field("Provider", select("provider", ["anthropic", "openai-compatible"], g?.provider || "anthropic")),
        field("Base URL", h("input", { name: "baseUrl", type: "url", value: g?.baseUrl || "", placeholder: "provider default" })),
        field("API key", h("input", { name: "apiKey", type: "password", autocomplete: "off", placeholder: g?.hasApiKey ? `•••• ${g.apiKeyLast4 || ""} (leave blank to keep)` : "gateway default" }),
          g?.hasApiKey ? "Write-only. Stored encrypted." : "Write-only. Optional."),
        field("Max iterations", numIn("maxIterations", g?.maxIterations)),
        field("Token budget / day", numIn("budgetMaxTokensDay", g?.budgetMaxTokensDay)),
        field("Token budget / month", numIn("budgetMaxTokensMonth", g?.budgetMaxTokensMonth))),
      g?.hasApiKey ? h("label.inline", h("input", { type: "checkbox", name: "clearKey" }), "Remove the stored API key") : null,
      field("System prompt", h("textarea", { name: "systemPrompt", rows: 5, value: g?.systemPrompt || "" })),
      h("fieldset.card", { style: "margin:0" }, h("legend", { text: "Skills (tools this group may use)" }),
        h("label.inline", allBox, h("strong", { text: "All tools" })), h("div.row", { style: "margin-top:.4rem" }, skillBoxes)),
      h("div.row", h("button.btn", { type: "submit", text: g ? "Save" : "Create group" }), h("button.btn.secondary", { type: "button", text: "Cancel", onclick: () => formBox.replaceChildren() })),
      h("p.error", { role: "alert" }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = form.elements;
      const n = (k) => (f[k].value ? Number(f[k].value) : null);
      const body = {
        name: f.name.value.trim(), systemPrompt: f.systemPrompt.value, provider: f.provider.value,
        maxIterations: n("maxIterations"), budgetMaxTokensDay: n("budgetMaxTokensDay"), budgetMaxTokensMonth: n("budgetMaxTokensMonth"),
        skills: allBox.checked ? null : [...form.querySelectorAll("input[name=skill]:checked")].map((i) => i.value),
      };
      if (f.model.value.trim()) body.model = f.model.value.trim(); else if (g) body.model = null;
      if (f.baseUrl.value.trim()) body.baseUrl = f.baseUrl.value.trim(); else if (g) body.baseUrl = null;
      if (f.apiKey.value) body.apiKey = f.apiKey.value;
      else if (f.clearKey?.checked) body.apiKey = null;
      if (!g) for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
      try {
        await api(g ? `/api/agent-groups/${g.id}` : "/api/agent-groups", { method: g ? "PUT" : "POST", body });
        toast(g ? `Group ${body.name} saved` : `Group ${body.name} created`);
        formBox.replaceChildren(); list.reload();
      } catch (err) { $(".error", form).textContent = err.message; }
    });
    formBox.replaceChildren(form);
    f0(form);
  };
  const f0 = (form) => { form.scrollIntoView({ block: "nearest" }); $("input", form).focus(); };
  const budgetBar = (label, used, max) => {
    if (!max) return h("div.small", h("span.muted", { text: `${label}: ` }), `${num(used)} tokens (no cap)`);
    const pct = Math.min(100, (used / max) * 100);
    return h("div.small",
      h("div.row", { style: "justify-content:space-between" }, h("span.muted", { text: label }), h("span", { text: `${num(used)} / ${num(max)} (${pct.toFixed(0)} %)` })),
      h("div.bar", { class: pct >= 100 ? "over" : pct >= 80 ? "warn" : "", role: "progressbar", "aria-label": `${label} budget`, "aria-valuemin": 0, "aria-valuemax": max, "aria-valuenow": used },
        h("span", { style: `width:${pct}%` })));
  };
  const card = (g) => {
    const statsBox = h("div", h("span.muted.small", { text: "Loading budget…" }));
    api(`/api/agent-groups/${g.id}/stats`).then((st) => {
      const b = st.budget || {};
      statsBox.replaceChildren(
        budgetBar("Today", b.tokensToday || 0, b.budgetMaxTokensDay),
        budgetBar("This month", b.tokensThisMonth || 0, b.budgetMaxTokensMonth),
        h("p.small.muted", { text: `Today: ${num(st.today?.runs)} runs, ${num(st.today?.errors)} errors, ${usd(st.today?.costMicros)} · This month: ${num(st.thisMonth?.runs)} runs, ${usd(st.thisMonth?.costMicros)}` }));
    }, (e) => statsBox.replaceChildren(h("p.error", { text: e.message })));
    return h("div.card",
      h("div.head", h("strong", { text: g.name }), h("div.row",
        h("button.btn.sm.secondary", { text: "Edit", onclick: () => openForm(g) }),
        h("button.btn.sm.danger", { text: "Delete", onclick: act(async () => {
          if (!confirm(`Delete agent group “${g.name}”?`)) return;
          const unbind = g.channels?.length ? "?unbind=true" : "";
          await api(`/api/agent-groups/${g.id}${unbind}`, { method: "DELETE" });
          toast("Group deleted"); list.reload();
        }) }))),
      h("div.grid2",
        kv("Model", `${g.model || "default"} (${g.provider || "anthropic"})`),
        kv("API key", g.hasApiKey ? `•••• ${g.apiKeyLast4 || ""}` : "gateway default"),
        kv("Skills", g.skills == null ? "all tools" : g.skills.join(", ") || "none"),
        kv("Max iterations", g.maxIterations ?? "default")),
      g.systemPrompt ? h("details", { style: "margin-top:.6rem" }, h("summary", { text: "System prompt" }), h("pre", { text: g.systemPrompt })) : null,
      h("div", { style: "margin-top:.6rem" }, statsBox),
      channelsRow(g),
      h("p.muted.small", { text: `Id ${g.id}` }));
  };
  let channels = [];
  const channelsRow = (g) => {
    const bound = (g.channels || []).map((id) => channels.find((c) => c.id === id) || { id, name: short(id) });
    const free = channels.filter((c) => !groupsNow.some((x) => (x.channels || []).includes(c.id)));
    const pick = select("bind", [["", "+ bind a channel…"], ...free.map((c) => [c.id, `${c.name} (${c.type})`])], "");
    pick.setAttribute("aria-label", `Bind a channel to ${g.name}`);
    pick.addEventListener("change", act(async () => {
      if (!pick.value) return;
      await api(`/api/agent-groups/${g.id}/assign/${pick.value}`, { method: "POST", body: {} });
      toast("Channel bound"); list.reload();
    }));
    return h("div.row", { style: "margin-top:.6rem;align-items:center" },
      h("span.muted.small", { text: "Channels:" }),
      bound.length ? bound.map((c) => h("span.badge", { text: c.name },
        h("button.btn.sm.secondary", { type: "button", text: "×", title: `Unbind ${c.name}`, "aria-label": `Unbind ${c.name}`, style: "margin-left:.3rem;padding:0 .3rem",
          onclick: act(async () => { await api(`/api/agent-groups/${g.id}/unassign/${c.id}`, { method: "POST", body: {} }); toast("Channel unbound"); list.reload(); }) }))) : h("span.small", { text: "none" }),
      free.length ? pick : null);
  };
  let groupsNow = [];
  const list = section(view, async () => {
    const [d, cs] = await Promise.all([api("/api/agent-groups?limit=200"), api("/api/channels").catch(() => ({ items: [] }))]);
    channels = cs.items; groupsNow = d.items;
    if (!d.items.length) return h("div.card.muted", { text: "No agent groups. Runs use the gateway's default model and key." });
    return h("div.grid2", { style: "grid-template-columns:repeat(auto-fit,minmax(20rem,1fr))" }, d.items.map(card));
  }, ctx);
  return { onEvent(ev) { if (ev.event.startsWith("budget:") || ev.event === "agent:run:complete") list.soon(); } };
}

// ---------- Channels ----------
// [key, label, kind, hint]; kind: text | password (write-only) | url | number | list (comma-separated) | [options]
const CHANNEL_FIELDS = {
  telegram: [
    ["botToken", "Bot token", "password", "From @BotFather. Write-only, stored encrypted."],
    ["apiBaseUrl", "Bot API URL", "url", "Default https://api.telegram.org (or your own Bot API server)."],
    ["mode", "Receive updates by", ["polling", "webhook"], "webhook: Telegram calls this gateway (needs a public https address)."],
    ["publicUrl", "Public URL (webhook mode)", "url", "The https address Telegram reaches this gateway at."],
    ["groupMode", "In group chats answer", ["mention", "all"], "mention: only when @mentioned or replied to."],
    ["adminChatIds", "Admin chat ids", "list", "Chats that get approval requests with Approve/Reject buttons."],
    ["pollTimeoutSeconds", "Long-poll seconds", "number", "Default 25."],
    ["outboundPerMinute", "Replies per minute (max)", "number", "Default 30."],
  ],
  email: [
    ["imapHost", "IMAP host", "text"], ["imapPort", "IMAP port", "number", "Default 993 (implicit TLS) or 143."],
    ["imapUser", "IMAP user", "text"], ["imapPassword", "IMAP password", "password", "Write-only."],
    ["imapTls", "IMAP TLS", ["implicit", "starttls", "none"]], ["mailbox", "Mailbox", "text", "Default INBOX."],
    ["smtpHost", "SMTP host", "text"], ["smtpPort", "SMTP port", "number", "Default 465, 587 or 25 by TLS mode."],
    ["smtpUser", "SMTP user", "text", "Optional."], ["smtpPassword", "SMTP password", "password", "Write-only."],
    ["smtpTls", "SMTP TLS", ["implicit", "starttls", "none"]], ["fromAddress", "From address", "text"],
    ["pollIntervalSeconds", "Poll every (s)", "number", "Used when the server has no IDLE. Default 60."],
    ["outboundPerMinute", "Replies per minute (max)", "number", "Default 20."],
  ],
  whatsapp: [
    ["mode", "Mode", ["cloud", "linked"], "cloud: Meta's WhatsApp Business Platform. linked: pair a phone by QR code (builds with the whatsapp-linked feature)."],
    ["phoneNumberId", "Phone number id (cloud)", "text"], ["accessToken", "Access token", "password", "Write-only."],
    ["appSecret", "App secret", "password", "Checks X-Hub-Signature-256. Write-only."],
    ["verifyToken", "Verify token", "password", "Any secret you also enter at Meta. Write-only."],
    ["graphBaseUrl", "Graph API URL", "url", "Default https://graph.facebook.com"],
    ["graphApiVersion", "Graph API version", "text", "Default v21.0"],
    ["outboundPerMinute", "Replies per minute (max)", "number", "Default 60."],
  ],
};
function viewChannels(view, _, ctx) {
  const formBox = h("div");
  view.append(h("div.head", h("h2", { text: "Channels" }), h("button.btn", { text: "+ New channel", onclick: () => openForm(null) })), formBox);
  let groups = [];
  const groupOf = (id) => groups.find((g) => (g.channels || []).includes(id));
  const openForm = (c) => {
    let kind = c?.type || "telegram";
    const fieldsBox = h("div.grid2");
    const drawFields = () => {
      fieldsBox.replaceChildren(...CHANNEL_FIELDS[kind].map(([key, label, type, hint]) => {
        const val = c?.config?.[key];
        let input;
        if (Array.isArray(type)) input = select(key, type, val ?? type[0]);
        else if (type === "password") {
          const isSet = (c?.secretsSet || []).includes(key);
          input = h("input", { name: key, type: "password", autocomplete: "off", placeholder: isSet ? "•••• set (leave blank to keep)" : "" });
        } else input = h("input", { name: key, type: type === "number" ? "number" : type === "url" ? "url" : "text", value: Array.isArray(val) ? val.join(", ") : val ?? "" });
        input.dataset.kind = Array.isArray(type) ? "select" : type;
        return field(label, input, hint);
      }));
    };
    const typeSel = select("type", ["telegram", "email", "whatsapp"], kind);
    if (c) typeSel.disabled = true;
    typeSel.addEventListener("change", () => { kind = typeSel.value; drawFields(); });
    drawFields();
    const bound = c ? groupOf(c.id) : null;
    const form = h("form.card.stack", { "aria-label": c ? `Edit ${c.name}` : "New channel" },
      h("h3", { text: c ? `Edit “${c.name}”` : "New channel" }),
      h("div.grid2",
        field("Type", typeSel),
        field("Name", h("input", { name: "name", required: true, maxlength: 100, value: c?.name || "", placeholder: "Support bot" })),
        field("Agent group", select("group", [["", "gateway defaults"], ...groups.map((g) => [g.id, g.name])], bound?.id || ""))),
      fieldsBox,
      field("Allowed senders", h("textarea", { name: "allowedSenders", rows: 2, value: (c?.allowedSenders || []).join("\n"), placeholder: "Empty: everyone. One per line: Telegram user id or @username, email address, phone number" })),
      h("label.inline", h("input", { type: "checkbox", name: "enabled", checked: c ? c.enabled : true }), "Enabled"),
      h("div.row", h("button.btn", { type: "submit", text: c ? "Save" : "Create channel" }), h("button.btn.secondary", { type: "button", text: "Cancel", onclick: () => formBox.replaceChildren() })),
      h("p.error", { role: "alert" }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const config = {};
      for (const input of fieldsBox.querySelectorAll("input,select")) {
        const v = input.value.trim();
        const k = input.dataset.kind;
        if (k === "password") { if (v) config[input.name] = v; continue; }
        if (!v) { if (c && c.config?.[input.name] !== undefined) config[input.name] = null; continue; }
        config[input.name] = k === "number" ? Number(v) : k === "list" ? v.split(/[\s,]+/).filter(Boolean).map((x) => (/^-?\d+$/.test(x) ? Number(x) : x)) : v;
      }
      const f = form.elements;
      const body = {
        name: f.name.value.trim(), config, enabled: f.enabled.checked,
        allowedSenders: f.allowedSenders.value.split(/\n|,/).map((x) => x.trim()).filter(Boolean),
      };
      if (!c) body.type = kind;
      try {
        const saved = await api(c ? `/api/channels/${c.id}` : "/api/channels", { method: c ? "PUT" : "POST", body });
        const want = f.group.value;
        const had = c ? groupOf(c.id)?.id || "" : "";
        if (had && had !== want) await api(`/api/agent-groups/${had}/unassign/${saved.id}`, { method: "POST", body: {} });
        if (want && want !== had) await api(`/api/agent-groups/${want}/assign/${saved.id}`, { method: "POST", body: {} });
        toast(c ? `Channel ${saved.name} saved` : `Channel ${saved.name} created`);
        formBox.replaceChildren(); list.reload();
      } catch (err) { $(".error", form).textContent = err.message; }
    });
    formBox.replaceChildren(form);
    form.scrollIntoView({ block: "nearest" });
    $("input[name=name]", form).focus();
  };
  const open = new Set();   // channels whose messages are shown
  const messagesBox = (c) => {
    const box = h("div", h("span.muted.small", { text: "Loading messages…" }));
    api(`/api/channels/${c.id}/messages?limit=20`).then((d) => {
      const counts = Object.entries(d.counts || {}).map(([k, v]) => `${v} ${k}`).join(" · ") || "no messages yet";
      box.replaceChildren(h("p.small.muted", { text: counts }), table([
        { label: "Received", get: (m) => when(m.receivedAt) },
        { label: "From", get: (m) => m.senderName ? `${m.senderName} (${m.sender})` : m.sender },
        { label: "Message", get: (m) => h("span", { class: "clip", title: m.text, text: m.text }) },
        { label: "Status", get: (m) => h("span", badge(m.status), m.ignoredReason ? h("span.muted.small", { text: " " + m.ignoredReason }) : null) },
        { label: "Reply", get: (m) => m.reply ? h("span", { class: "clip", title: m.reply, text: m.reply }) : m.error ? h("span.error.small", { text: m.error }) : "—" },
        { label: "Run", get: (m) => m.runId ? h("a", { href: `#/runs/${m.runId}`, text: short(m.runId) }) : "—" },
      ], d.messages, { empty: "No messages yet." }));
    }, (e) => box.replaceChildren(h("p.error", { text: e.message })));
    return box;
  };
  const card = (c) => {
    const g = groupOf(c.id);
    const msgs = h("div");
    if (open.has(c.id)) msgs.append(messagesBox(c));
    const hook = c.type === "whatsapp" ? `${location.origin}/webhook/whatsapp/${c.id}` : null;
    return h("div.card", { "data-channel": c.id },
      h("div.head",
        h("div", h("strong", { text: c.name }), " ", h("span.muted.small", { text: c.type }), " ", badge(c.status, "status")),
        h("div.row",
          h("button.btn.sm.secondary", { text: open.has(c.id) ? "Hide messages" : "Messages", onclick: () => { open.has(c.id) ? open.delete(c.id) : open.add(c.id); list.reload(); } }),
          h("button.btn.sm.secondary", { text: "Edit", onclick: () => openForm(c) }),
          h("button.btn.sm.secondary", { text: c.enabled ? "Disable" : "Enable", onclick: act(async () => {
            await api(`/api/channels/${c.id}`, { method: "PUT", body: { enabled: !c.enabled } });
            list.reload();
          }) }),
          h("button.btn.sm.danger", { text: "Delete", onclick: act(async () => {
            if (!confirm(`Delete channel “${c.name}”? Its messages stay in the history.`)) return;
            await api(`/api/channels/${c.id}`, { method: "DELETE" });
            toast("Channel deleted"); list.reload();
          }) }))),
      c.lastError ? h("p.error.small", { role: "status", text: c.lastError }) : null,
      h("div.grid2",
        kv("Agent group", g ? g.name : "gateway defaults"),
        kv("Last message", c.lastMessageAt ? ago(c.lastMessageAt) : "none yet"),
        kv("Allowed senders", c.allowedSenders.length ? c.allowedSenders.join(", ") : "everyone"),
        kv("Credentials", c.secretsSet.length ? c.secretsSet.join(", ") + " set" : "none")),
      hook ? h("div", h("div.muted.small", { text: "Callback URL for Meta (with your verify token)" }), h("div.copyline", h("code", { text: hook }), copyBtn(hook))) : null,
      c.qr ? h("div", h("div.muted.small", { text: "Pair: WhatsApp on the phone → Linked devices → Link a device, then scan" }),
        h("img", { src: `/api/channels/${encodeURIComponent(c.id)}/qr.svg?v=${encodeURIComponent(c.qr.slice(-12))}`, alt: "Pairing QR code", width: 256, height: 256 })) : null,
      msgs);
  };
  const list = section(view, async () => {
    const [d, gs] = await Promise.all([api("/api/channels"), api("/api/agent-groups").catch(() => ({ items: [] }))]);
    groups = gs.items;
    if (!d.items.length) return h("div.card.muted", { text: "No channels yet. Connect a Telegram bot, a mailbox or a WhatsApp number to talk to your agents from there." });
    return h("div.stack", d.items.map(card));
  }, ctx);
  return {
    onEvent(ev) {
      if (ev.event === "channel:status") {
        // Update the badge at once; the card (last error) follows with the reload.
        const b = view.querySelector(`[data-channel="${CSS.escape(ev.payload.channelId)}"] .badge.status`);
        if (b) { b.textContent = ev.payload.status; b.className = `badge status ${ev.payload.status}`; }
        list.soon();
      } else if (ev.event.startsWith("message:")) list.soon();
    },
  };
}

// ---------- Tools ----------
function viewTools(view, _, ctx) {
  view.append(h("h2", { text: "Tools" }));
  section(view, async () => {
    const [d, rules] = await Promise.all([api("/api/tools"), api("/api/approval-rules").catch(() => ({ items: [] }))]);
    const rule = Object.fromEntries(rules.items.map((r) => [r.toolName, r]));
    if (!d.items.length) return h("div.card.muted", { text: "No tools registered." });
    return d.items.map((t) => {
      const props = t.inputSchema?.properties || {};
      const req = new Set(t.inputSchema?.required || []);
      const r = rule[t.name];
      return h("div.card",
        h("div.head", h("span.row", h("strong", { text: t.name }), badge(t.riskLevel), t.builtin ? badge("built-in", "info") : null),
          r ? h("span.small.muted", { text: r.requireApproval ? `needs approval · ${r.timeoutSeconds}s then ${r.timeoutAction}` : "runs without approval" }) : null),
        h("p", { text: t.description || "" }),
        Object.keys(props).length ? table([
          { label: "Parameter", get: ([k]) => h("code", { text: k }) },
          { label: "Type", get: ([, v]) => (v.enum ? v.enum.join(" | ") : v.type || "any") },
          { label: "Required", get: ([k]) => (req.has(k) ? "yes" : "") },
          { label: "Description", get: ([, v]) => v.description || "" },
        ], Object.entries(props)) : null,
        h("details", h("summary", { text: "JSON schema" }), h("pre", { text: JSON.stringify(t.inputSchema, null, 2) })));
    });
  }, ctx);
}

// ---------- wiring ----------
$("#logout").addEventListener("click", async () => {
  // Stop listening first: the logout's own event must not trigger requests after it.
  if (socket) { socket.onclose = null; socket.onmessage = null; socket.close(); socket = null; }
  token = false;
  try { await api("/api/auth/logout", { method: "POST" }); } catch (_) { /* already gone */ }
  signOut();
});
$("#menu").addEventListener("click", () => {
  const open = $("#nav").classList.toggle("open");
  $("#menu").setAttribute("aria-expanded", String(open));
  $("#menu").setAttribute("aria-label", open ? "Close navigation" : "Open navigation");
});
window.addEventListener("hashchange", () => { render(); $("#view").focus({ preventScroll: true }); window.scrollTo(0, 0); });
bindForm($("#setup-form"), "/api/auth/setup");
bindForm($("#login-form"), "/api/auth/login");
start();
