// OEM Gateway's page: polls /api/status while visible, edits the config through /api/config.
// Plain DOM, no framework; data is only ever put in the page as text, never as HTML.
"use strict";

const POLL_MS = 2000;
const HISTORY_MS = 3600 * 1000;      // the buffers' chart: the last hour (while the page is open)
const SPARK_POINTS = 60;             // the nodes' sparklines: the last 60 values seen
const MASK = "********";

const state = { csrf: null, timer: null, buffers: {}, nodes: {}, config: null, status: null };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const reply = await fetch(path, { method, headers, credentials: "same-origin",
                                    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await reply.json().catch(() => ({}));
  if (reply.status === 401 && path !== "/api/login") showLogin();
  return { code: reply.status, data };
}

// -- login ------------------------------------------------------------------------------------
function showLogin() {
  stopPolling();
  state.csrf = null;
  $("main").classList.add("hidden");
  $("logout").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("password").focus();
}

function showMain() {
  $("login").classList.add("hidden");
  $("main").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  poll();
}

async function login(event) {
  event.preventDefault();
  const { code, data } = await api("POST", "/api/login", { password: $("password").value });
  $("password").value = "";
  if (code !== 200) { $("login-error").textContent = data.error || "login failed"; return; }
  $("login-error").textContent = "";
  state.csrf = data.csrf;
  showMain();
}

async function logout() {
  await api("POST", "/api/logout", {});
  showLogin();
}

// -- status -----------------------------------------------------------------------------------
function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
}

async function poll() {
  stopPolling();
  if (document.visibilityState !== "visible" || !state.csrf) return;
  const { code, data } = await api("GET", "/api/status");
  if (code === 200) { render(data); $("stale").classList.add("hidden"); }
  else if (code !== 401) { $("stale").textContent = data.error || "no answer"; $("stale").classList.remove("hidden"); }
  if (state.csrf) state.timer = setTimeout(poll, POLL_MS);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function fillTable(id, rows) {
  $(id).tBodies[0].replaceChildren(...rows);
}

function stateCell(text) { return el("td", { class: `state-${text}` }, text); }

function render(status) {
  state.status = status;
  $("summary").textContent = `${status.version}, up ${age(status.uptime_s).replace(" ago", "")}` +
    `, clock ${status.clock.synchronised ? "synchronised" : "NOT synchronised"}`;
  fillTable("listeners", Object.entries(status.listeners).flatMap(([name, l]) => [el("tr", {},
    el("td", {}, name), el("td", {}, l.type), stateCell(l.state), el("td", { class: "num" }, l.frames_good),
    el("td", { class: "num" }, l.frames_bad), el("td", {}, age(l.last_frame_age_s))),
    ...Object.entries(l.devices || {}).map(([device, d]) => deviceRow(device, d))]));
  fillTable("buffers", Object.entries(status.buffers).map(([name, b]) => bufferRow(name, b)));
  const spool = status.spool;
  $("spool").textContent = `Queued readings: ${spool.memory_bytes} bytes in memory, ${spool.disk_bytes} bytes on disk ` +
    `(durability ${spool.durability}; ${spool.disk_writes} disk writes, ${spool.disk_errors} errors).`;
  fillTable("nodes", Object.entries(status.nodes).map(([node, n]) => nodeRow(node, n)));
  renderLog("log-problems", status.log ? status.log.problems.slice().reverse() : []);
  renderLog("log-recent", status.log ? status.log.recent.slice().reverse() : []);
}

// A polled device (a meter) under its listener: good and failed polls, its last good read.
function deviceRow(name, d) {
  const read = d.latency_s === null ? "" : `, read in ${Math.round(d.latency_s * 1000)} ms`;
  return el("tr", { class: "device" }, el("td", {}, `\u21b3 ${name}`),
    el("td", {}, d.address === undefined ? "" : `address ${d.address}`), stateCell(d.state),
    el("td", { class: "num" }, d.polls - d.errors), el("td", { class: "num" }, d.errors),
    el("td", { title: d.last_error || "" }, age(d.last_good_read_age_s) + read +
       (d.state === "failing" && d.last_error ? `; ${d.last_error}` : "")));
}

function bufferRow(name, b) {
  const now = Date.now();
  const history = (state.buffers[name] = state.buffers[name] || []);
  history.push({ t: now, queued: b.queued, delivered: b.delivered });
  while (history.length && history[0].t < now - HISTORY_MS) history.shift();
  const rates = history.slice(1).map((h, i) => (h.delivered - history[i].delivered) / Math.max(1, (h.t - history[i].t) / 1000));
  const dropped = Object.entries(b.dropped).filter(([, n]) => n).map(([reason, n]) => `${n} ${reason}`).join(", ") || "0";
  return el("tr", {}, el("td", {}, name), el("td", {}, b.type), stateCell(b.state),
    el("td", { class: "num" }, b.queued), el("td", {}, b.queued ? age(b.oldest_queued_age_s).replace(" ago", "") : ""),
    el("td", { class: "num" }, b.delivered), el("td", {}, dropped),
    el("td", { title: "queue depth (orange) and deliveries per second (blue) while this page is open, up to an hour" },
       chart([[history.map(h => h.queued), "depth"], [rates, "rate"]], "chart")),
    el("td", { class: "error" }, b.inactive_reason ? `inactive (${b.inactive_reason}): not recording`
                                 : b.last_error && b.state !== "ok" ? b.last_error : ""));
}

function nodeRow(node, n) {
  const history = (state.nodes[node] = state.nodes[node] || { seen: null, values: {} });
  if (n.values && n.frames !== history.seen) {
    history.seen = n.frames;
    for (const [key, value] of Object.entries(n.values)) {
      const list = (history.values[key] = history.values[key] || []);
      list.push(value);
      if (list.length > SPARK_POINTS) list.shift();
    }
  }
  const values = Object.entries(n.values || {}).map(([key, value]) => el("span", { class: "value" },
    `${key} `, el("b", {}, value), n.units && n.units[key] ? ` ${n.units[key]}` : ""));
  const first = Object.keys(n.values || {})[0];
  return el("tr", { "data-node": node },
    el("td", {}, n.nodename ? `${n.nodename} (${node})` : node), el("td", { class: "values" }, ...values),
    el("td", { class: "num" }, n.rssi === null ? "" : `${n.rssi} dBm`), el("td", {}, age(n.last_seen_age_s)),
    el("td", { class: "num" }, n.frames),
    el("td", { title: first ? `${first}, last ${SPARK_POINTS} values seen` : "" },
       first ? chart([[history.values[first], "depth"]], "spark") : ""));
}

function chart(series, kind) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", kind);
  svg.setAttribute("viewBox", "0 0 100 20");
  svg.setAttribute("preserveAspectRatio", "none");
  for (const [values, cls] of series) {
    if (!values || values.length < 2) continue;
    const low = Math.min(...values), high = Math.max(...values), span = high - low || 1;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("points", values.map((v, i) =>
      `${(i * 100 / (values.length - 1)).toFixed(1)},${(19 - (v - low) * 18 / span).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
}

function renderLog(id, lines) {
  const shown = lines.map(line => el("div", { class: line.level }, line.text));
  $(id).replaceChildren(...(shown.length ? shown : [el("div", { class: "note" }, "none")]));
}

// -- settings forms ---------------------------------------------------------------------------
async function loadConfig() {
  const { code, data } = await api("GET", "/api/config");
  if (code !== 200) return;
  state.config = data;
  $("config-path").textContent = `Editing ${data.path}`;
  $("config-text").value = data.text;
  showProblems($("config-problems"), data.problems || []);
  buildForms(data.sections || {});
}

function asText(value) { return Array.isArray(value) ? value.join(", ") : value === undefined ? "" : String(value); }

function field(key, value) {
  const secret = value === MASK;
  return el("label", {}, key, el("input", { name: key, value: asText(value), type: secret ? "password" : "text",
                                            placeholder: secret ? "unchanged" : "" }),
            el("span", { class: "error", "data-error": key }));
}

// A form for one section; ``save(entered)`` gets the fields' values (a secret left empty: MASK).
function sectionForm(path, values, keys, removable, save) {
  const form = el("form", { class: "section", "data-section": path.join("/") }, el("h3", {}, path.slice(1).join(" ")));
  for (const key of keys) form.append(field(key, values[key]));
  const buttons = el("div", { class: "buttons" }, el("button", { type: "submit" }, "Save"));
  if (removable) buttons.append(el("button", { type: "button", onclick: () => saveSection(form, path, null, true) }, "Remove"));
  form.append(el("span", { class: "error", "data-error": "" }), buttons);
  form.addEventListener("submit", event => {
    event.preventDefault();
    const entered = {};
    for (const input of form.querySelectorAll("input")) {
      entered[input.name] = input.type === "password" && input.value === "" ? MASK : input.value;
    }
    if (entered["new-key"]) entered[entered["new-key"]] = entered["new-value"];
    delete entered["new-key"];
    delete entered["new-value"];
    (save || (values => saveSection(form, path, values, false)))(entered);
  });
  return form;
}

function pluginForms(kind, sections, holder) {
  const forms = Object.entries(sections || {}).map(([name, values]) => {
    const keys = Object.keys(values).filter(k => typeof values[k] !== "object" || Array.isArray(values[k]));
    const form = sectionForm([kind, name], values, keys, true);
    form.insertBefore(el("label", {}, "add a setting", el("span", { class: "pair" },
                         el("input", { name: "new-key", placeholder: "key" }),
                         el("input", { name: "new-value", placeholder: "value" }))), form.lastChild.previousSibling);
    return form;
  });
  holder.replaceChildren(...forms, addForm(kind, `add a ${kind === "listeners" ? "listener" : "buffer"}`, "name", ["type"]));
}

// A form that creates the section [kind] [[<the value of nameKey>]] with the other keys.
function addForm(kind, title, nameKey, keys) {
  const form = sectionForm([kind, ""], {}, [nameKey, ...keys], false, entered => {
    const name = entered[nameKey].trim();
    delete entered[nameKey];
    saveSection(form, [kind, name], entered, false);
  });
  form.querySelector("h3").textContent = title;
  return form;
}

function buildForms(sections) {
  const nodes = Object.assign({}, sections.nodes || {});
  for (const node of Object.keys((state.status && state.status.nodes) || {})) nodes[node] = nodes[node] || {};
  const keys = ["nodename", "names", "units", "scales"];
  $("node-forms").replaceChildren(...Object.entries(nodes).map(([node, values]) =>
    sectionForm(["nodes", node], values, keys, node in (sections.nodes || {}))), addForm("nodes", "add a node", "node", keys));
  pluginForms("listeners", sections.listeners, $("listener-forms"));
  pluginForms("buffers", sections.buffers, $("buffer-forms"));
}

async function saveSection(form, path, values, remove) {
  for (const span of form.querySelectorAll("[data-error]")) span.textContent = "";
  const { code, data } = await api("POST", "/api/config/section", { section: path, values: values || {}, remove });
  const message = $("settings-message");
  if (code === 200) {
    message.className = "message ok";
    message.textContent = `Saved${data.applied ? " and applied" : ""}.`;
    await loadConfig();
    return;
  }
  message.className = "message error";
  message.textContent = data.error || "Not saved: see the problems below the fields.";
  for (const problem of data.problems || []) {
    const span = form.querySelector(`[data-error="${CSS.escape(problem.key || "")}"]`) || form.querySelector('[data-error=""]');
    span.textContent = problem.message;
  }
}

// -- the whole file ---------------------------------------------------------------------------
function showProblems(list, problems, warnings) {
  const items = problems.map(p => el("li", {}, `${p.line ? `line ${p.line}: ` : ""}${p.message}`));
  for (const w of warnings || []) items.push(el("li", { class: "note" }, `${w.line ? `line ${w.line}: ` : ""}warning: ${w.message}`));
  items.forEach((item, i) => {
    const line = i < problems.length ? problems[i].line : (warnings[i - problems.length] || {}).line;
    if (line) item.addEventListener("click", () => selectLine(line));
  });
  list.replaceChildren(...items);
}

function selectLine(number) {
  const area = $("config-text");
  const lines = area.value.split("\n");
  const start = lines.slice(0, number - 1).join("\n").length + (number > 1 ? 1 : 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[number - 1] || "").length);
}

async function sendFile(path) {
  const { code, data } = await api("POST", path, { text: $("config-text").value });
  const message = $("config-message");
  const saved = path === "/api/config" && code === 200;
  message.className = code === 200 ? "message ok" : "message error";
  message.textContent = code === 200 ? (saved ? `Saved${data.applied ? " and applied" : ""}.` : "The config is valid.")
                                     : data.error || `Not saved: ${(data.problems || []).length} problem(s).`;
  showProblems($("config-problems"), data.problems || [], data.warnings || []);
  if (saved) await loadConfig();
}

// -- start ------------------------------------------------------------------------------------
function showTab(name) {
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("hidden", tab.id !== `tab-${name}`);
  if (name !== "status" && !state.config) loadConfig();
}

async function start() {
  const local = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
  $("tls-warning").classList.toggle("hidden", location.protocol === "https:" || local);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("config-check").addEventListener("click", () => sendFile("/api/config/check"));
  $("config-save").addEventListener("click", () => sendFile("/api/config"));
  $("config-reload").addEventListener("click", loadConfig);
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") poll(); else stopPolling(); });
  const { code, data } = await api("GET", "/api/session");
  if (code === 200) { state.csrf = data.csrf; showMain(); } else showLogin();
}

document.addEventListener("DOMContentLoaded", start);
