// Loop Gateway: first-visit setup, login, and a live overview over the WebSocket.
"use strict";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("lg-token");
let socket = null;
let retryMs = 1000;

async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { ...options, headers });
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401 && token) { signOut(); }
  if (!res.ok) throw new Error(body?.error?.message || `HTTP ${res.status}`);
  return body;
}

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
  $("#logout").hidden = id !== "home";
}

function signOut() {
  token = null;
  sessionStorage.removeItem("lg-token");
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  route();
}

async function route() {
  if (token) return home();
  try {
    const status = await api("/api/auth/status");
    $("#setup-code-label").hidden = !status.setupCodeRequired;
    show(status.setupRequired ? "setup" : "login");
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
      const session = await api(path, { method: "POST", body: JSON.stringify(data) });
      token = session.token;
      sessionStorage.setItem("lg-token", token);
      form.reset();
      home();
    } catch (e) {
      form.querySelector(".error").textContent = e.message;
    }
  });
}

async function home() {
  try {
    const me = await api("/api/auth/me");
    $("#whoami").textContent = me.username;
    show("home");
    const h = await api("/api/health");
    $("#health").textContent =
      `Status ${h.status} · version ${h.version} · up ${h.uptimeSeconds}s · ` +
      `${h.actors.length} supervised actor(s), ${h.actors.reduce((n, a) => n + a.restarts, 0)} restart(s)`;
    connect();
  } catch (e) {
    if (token) show("login");
  }
}

async function connect() {
  if (socket || !token) return;
  try {
    const { ticket } = await api("/api/auth/ws-ticket", { method: "POST" });
    const proto = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${proto}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
  } catch (e) {
    return setTimeout(connect, retryMs = Math.min(retryMs * 2, 30000));
  }
  socket.onopen = () => { retryMs = 1000; $("#live").textContent = "live"; $("#live").classList.add("on"); };
  socket.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    const li = document.createElement("li");
    const name = document.createElement("b");
    name.textContent = ev.event;
    li.append(name, ` ${new Date(ev.timestamp).toLocaleTimeString()} ${JSON.stringify(ev.payload)}`);
    $("#feed").prepend(li);
    while ($("#feed").children.length > 100) $("#feed").lastChild.remove();
  };
  socket.onclose = () => {
    socket = null;
    $("#live").textContent = "offline";
    $("#live").classList.remove("on");
    if (token) setTimeout(connect, retryMs = Math.min(retryMs * 2, 30000));
  };
}

$("#logout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST" }); } catch (_) { /* already gone */ }
  signOut();
});
bindForm($("#setup-form"), "/api/auth/setup");
bindForm($("#login-form"), "/api/auth/login");
route();
