// OEM Gateway's page: Watch (inputs by node, charts, destinations, devices), Set up (forms built
// from each plugin's settings), Config file (the whole file, with line numbers).
// Plain DOM, no framework, no build step; data is only ever put in the page as text, never as HTML.
// It asks the gateway for anything only while it is visible: a closed or hidden page costs nothing.
"use strict";

const POLL_MS = 2000;
const SPARK_MS = 60000;              // the inputs' sparklines (last hour, per minute) are fetched this often
const MASK = "********";
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

const state = {
  csrf: null, timer: null, status: null, config: null, forms: null, spark: {}, sparkAt: 0,
  chart: null, editing: null, fileVersion: null,
};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  let reply;
  try {
    reply = await fetch(path, { method, headers, credentials: "same-origin",
                                body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    return { code: 0, data: { error: "the gateway does not answer (is it running? is the network up?)" } };
  }
  const data = await reply.json().catch(() => ({}));
  if (reply.status === 401 && path !== "/api/login") showLogin();
  return { code: reply.status, data };
}

// -- numbers and times --------------------------------------------------------------------------
function number(value) {
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const size = Math.abs(value);
  const decimals = size >= 1000 ? 0 : size >= 100 ? 1 : size >= 1 ? 2 : 3;
  return String(Number(value.toFixed(decimals)));
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// "1 frame", "2 frames".
function plural(count, noun) { return `${count} ${noun}${count === 1 ? "" : "s"}`; }

// How late a node is: "fresh", "stale" (late: missed a few of its usual frames) or "dead".
function freshness(n) {
  const seconds = n.last_seen_age_s, every = n.interval_s;
  if (seconds === null || seconds === undefined) return "dead";
  const stale = every ? Math.max(3 * every, every + 5) : 60;
  const dead = every ? Math.max(20 * every, 600) : 600;
  return seconds > dead ? "dead" : seconds > stale ? "stale" : "fresh";
}

// -- login --------------------------------------------------------------------------------------
function showLogin() {
  stopPolling();
  state.csrf = null;
  $("main").classList.add("hidden");
  $("logout").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("password").focus();
}

async function showMain() {
  $("login").classList.add("hidden");
  $("main").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  showTab((location.hash || "#watch").slice(1));
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

// -- polling ------------------------------------------------------------------------------------
function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
}

async function poll() {
  stopPolling();
  if (document.visibilityState !== "visible" || !state.csrf) return;
  const { code, data } = await api("GET", "/api/status");
  if (code === 200) {
    $("stale").classList.add("hidden");
    if (Date.now() - state.sparkAt > SPARK_MS) await loadSparks();
    render(data);
  } else if (code !== 401) {
    $("stale").textContent = `Not up to date: ${data.error || "no answer"}`;
    $("stale").classList.remove("hidden");
  }
  if (state.csrf) state.timer = setTimeout(poll, POLL_MS);
}

async function loadSparks() {
  const { code, data } = await api("GET", "/api/history?minutes=60");
  if (code === 200) { state.spark = data.nodes; state.sparkAt = Date.now(); }
}

function render(status) {
  state.status = status;
  $("summary").textContent = `${status.version}, up ${age(status.uptime_s).replace(" ago", "")}` +
    (status.clock.synchronised ? "" : ", clock NOT synchronised");
  renderInputs(status);
  renderDestinations(status);
  renderDevices(status);
  renderLog("log-problems", status.log ? status.log.problems.slice().reverse() : []);
  renderLog("log-recent", status.log ? status.log.recent.slice().reverse() : []);
  noticeFileChange(status.config_version);
  if (state.config) renderNewNodes();
}

// -- Watch: inputs ------------------------------------------------------------------------------
function nodeLabel(node, n) { return n.nodename ? n.nodename : `node ${node}`; }

// Where the node's last reading went: one chip per destination it is for (routing: from_nodes, from_listeners).
function deliveryChips(node, n, status) {
  return Object.entries(status.buffers).filter(([name]) => !(n.not_for || []).includes(name)).map(([name, b]) => {
    if (b.level === "off") return el("span", { class: "chip off", title: b.words }, `${name}: off`);
    const refused = (b.rejected_by_node || {})[n.nodename || node] || (b.rejected_by_node || {})[node];
    if (refused) return el("span", { class: "chip error", title: `${plural(refused, "reading")} refused` }, `${name}: refused`);
    const waiting = b.queued && (b.oldest_queued_age_s || 0) >= (n.last_seen_age_s || 0);
    if (waiting) return el("span", { class: `chip ${b.level === "error" ? "error" : "behind"}`, title: b.words },
                           `${name}: waiting ${age(b.oldest_queued_age_s).replace(" ago", "")}`);
    return el("span", { class: "chip ok", title: "the last reading was delivered" }, `${name} ✓`);
  });
}

function renderInputs(status) {
  const holder = $("inputs");
  const nodes = Object.entries(status.nodes);
  $("no-inputs").classList.toggle("hidden", nodes.length > 0);
  for (const group of holder.querySelectorAll(".node")) {
    if (!(group.dataset.node in status.nodes)) group.remove();
  }
  for (const [node, n] of nodes) {
    let group = holder.querySelector(`.node[data-node="${CSS.escape(node)}"]`);
    if (!group) {
      group = el("div", { class: "node", "data-node": node });
      holder.append(group);
    }
    if (state.editing && group.contains(state.editing)) continue;   // a rename is being typed here
    const fresh = freshness(n);
    const radio = [n.rssi === null || n.rssi === undefined ? null : `RSSI ${n.rssi} dBm`,
                   n.missed ? `${n.missed} missed` : null, n.duplicates ? `${n.duplicates} duplicates` : null,
                   n.dropped ? `${n.dropped} undecodable` : null].filter(Boolean).join(" · ");
    const head = el("div", { class: "node-head" },
      el("h3", {}, renameable(nodeLabel(node, n), "node name", value => renameNode(node, value)),
         n.nodename ? el("span", { class: "note" }, ` (node ${node})`) : null),
      el("span", { class: `age age-${fresh}`, title: fresh === "fresh" ? "on time" : fresh === "stale"
                   ? "late: missed its usual time" : "silent for long" },
         `last heard ${age(n.last_seen_age_s)}` + (n.interval_s >= 1 ? `, every ${Math.round(n.interval_s)} s` : "")),
      el("span", { class: "note" }, `${plural(n.frames, "frame")}${radio ? " · " + radio : ""}`),
      el("span", { class: "chips" }, deliveryChips(node, n, status)));
    const units = n.units || {};
    const rows = Object.entries(n.values || {}).map(([name, value], index) => {
      const spark = ((state.spark[node] || {}).inputs || {})[name];
      return el("tr", { "data-input": name, onclick: event => { if (!event.target.closest(".rename")) openChart(node, name); } },
        el("td", { class: "name" }, renameable(name, "input name", value => renameInput(node, index, value))),
        el("td", { class: `num value age-${fresh}` }, number(value), units[name] ? el("span", { class: "unit" }, ` ${units[name]}`) : ""),
        el("td", { class: "spark-cell", title: "the last hour, per minute" }, spark ? sparkline(spark) : ""));
    });
    const table = el("table", { class: "inputs" },
      el("thead", {}, el("tr", {}, el("th", {}, "input"), el("th", { class: "num" }, "value"), el("th", {}, "last hour"))),
      el("tbody", {}, rows));
    group.className = `node node-${fresh}`;
    group.replaceChildren(head, table);
  }
}

// A name that turns into a text field when clicked; Enter saves, Escape cancels.
function renameable(text, what, save) {
  const button = el("button", { type: "button", class: "rename", title: `Rename this ${what}` }, text);
  button.addEventListener("click", event => {
    event.stopPropagation();
    const input = el("input", { class: "rename-input", value: text, "aria-label": what });
    const error = el("span", { class: "error" });
    const box = el("span", { class: "rename" }, input, error);
    state.editing = box;
    button.replaceWith(box);
    input.focus();
    input.select();
    const done = () => { state.editing = null; if (state.status) renderInputs(state.status); };
    input.addEventListener("keydown", async key => {
      if (key.key === "Escape") done();
      if (key.key !== "Enter") return;
      const answer = await save(input.value.trim());
      if (answer.code === 200) { done(); return; }
      error.textContent = problemsText(answer.data);
    });
    input.addEventListener("blur", () => setTimeout(() => { if (state.editing === box && document.activeElement !== input) done(); }, 200));
  });
  return button;
}

function problemsText(data) {
  return data.error || (data.problems || []).map(p => p.message).join("; ") || "not saved";
}

async function nodeSection(node) {
  if (!state.config) await loadConfig();
  return ((state.config.sections || {}).nodes || {})[node] || null;
}

async function renameNode(node, name) {
  await nodeSection(node);
  return saveSection(["nodes", node], { nodename: name });
}

async function renameInput(node, index, name) {
  const section = await nodeSection(node);
  const shown = Object.keys(state.status.nodes[node].values || {});
  let names = section && section.names ? [].concat(section.names) : shown.slice();
  while (names.length < shown.length) names.push(shown[names.length]);
  names[index] = name;
  return saveSection(["nodes", node], { names: names.join(", ") });
}

// -- charts -------------------------------------------------------------------------------------
function sparkline(values) {
  const points = values.map((v, i) => [i, v]).filter(([, v]) => v !== null);
  if (points.length < 2) return "";
  const ys = points.map(([, v]) => v), low = Math.min(...ys), high = Math.max(...ys), span = high - low || 1;
  const line = points.map(([i, v]) => `${(i * 100 / (values.length - 1)).toFixed(1)},${(19 - (v - low) * 18 / span).toFixed(1)}`);
  return svg("svg", { class: "spark", viewBox: "0 0 100 20", preserveAspectRatio: "none" },
             svg("polyline", { points: line.join(" ") }));
}

async function openChart(node, input) {
  const n = state.status.nodes[node];
  state.chart = { node, shown: new Set([input]), minutes: null };
  $("chart-title").textContent = nodeLabel(node, n);
  $("chart-panel").classList.remove("hidden");
  await drawChart();
  $("chart-panel").scrollIntoView({ block: "nearest" });
}

async function drawChart() {
  const { node, shown } = state.chart;
  const { code, data } = await api("GET", `/api/history?node=${encodeURIComponent(node)}&minutes=1440`);
  const full = code === 200 ? data.nodes[node] : null;
  if (!state.chart.minutes) state.chart.minutes = full ? shortestRange(full) : 1440;
  const minutes = state.chart.minutes;
  for (const button of document.querySelectorAll("#chart-panel [data-minutes]")) {
    button.classList.toggle("active", Number(button.dataset.minutes) === minutes);
  }
  const history = full ? { start: full.start + (1440 - minutes) * full.step, step: full.step, inputs: Object.fromEntries(
    Object.entries(full.inputs).map(([name, values]) => [name, values.slice(values.length - minutes)])) } : null;
  const units = (state.status.nodes[node] || {}).units || {};
  const names = history ? Object.keys(history.inputs) : [];
  $("chart-legend").replaceChildren(...names.map((name, i) => el("label", { class: "legend-item" },
    el("input", { type: "checkbox", checked: shown.has(name) ? true : null,
                  onchange: event => { event.target.checked ? shown.add(name) : shown.delete(name); drawChart(); } }),
    el("span", { class: "swatch", style: `background:${COLOURS[i % COLOURS.length]}` }),
    `${name}${units[name] ? ` (${units[name]})` : ""}`)));
  if (!history) { $("chart").replaceChildren(el("p", { class: "note" }, "No history yet.")); return; }
  const series = names.map((name, i) => ({ name, unit: units[name] || "", colour: COLOURS[i % COLOURS.length],
                                            values: history.inputs[name] })).filter(s => shown.has(s.name));
  $("chart").replaceChildren(timeChart(series, history.start, history.step, $("chart").clientWidth || 600));
}

// The shortest of 1 h, 6 h, 24 h that shows all the history there is.
function shortestRange(history) {
  const first = Math.min(...Object.values(history.inputs).map(values => { const i = values.findIndex(v => v !== null); return i < 0 ? 1440 : i; }));
  const span = 1440 - first;
  return span <= 60 ? 60 : span <= 360 ? 360 : 1440;
}

function niceTicks(low, high, count) {
  if (high - low < 1e-9) { const pad = Math.abs(high) * 0.05 || 1; low -= pad; high += pad; }
  const raw = (high - low) / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(f => f * power).find(s => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.floor(low / step) * step; ; v += step) {
    ticks.push(Number(v.toPrecision(12)));
    if (v >= high || ticks.length > 20) break;
  }
  return ticks;
}

// A line chart of per-minute means with a time axis, a value axis with its unit, gaps where nothing came.
function timeChart(series, start, step, width) {
  const height = 240, left = 56, right = 12, top = 12, bottom = 28;
  const count = series.length ? series[0].values.length : 0;
  const values = series.flatMap(s => s.values.filter(v => v !== null));
  const chart = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (!values.length) {
    chart.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "nothing received in this period"));
    return chart;
  }
  const ticks = niceTicks(Math.min(...values), Math.max(...values), 4);
  const low = ticks[0], high = ticks[ticks.length - 1], span = high - low || 1;
  const x = i => left + (i / Math.max(1, count - 1)) * (width - left - right);
  const y = v => top + (1 - (v - low) / span) * (height - top - bottom);
  const units = [...new Set(series.map(s => s.unit).filter(Boolean))].join(", ");
  for (const tick of ticks) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }),
                 svg("text", { x: left - 4, y: y(tick) + 4, "text-anchor": "end", class: "axis" }, number(tick)));
  }
  if (units) chart.append(svg("text", { x: 4, y: top + 2, class: "axis unit" }, units));
  const hours = count * step / 3600, every = hours <= 1 ? 900 : hours <= 6 ? 3600 : 4 * 3600;
  for (let t = Math.ceil(start / every) * every; t < start + count * step; t += every) {
    const i = (t - start) / step, when = new Date(t * 1000);
    const label = `${String(when.getHours()).padStart(2, "0")}:${String(when.getMinutes()).padStart(2, "0")}`;
    chart.append(svg("line", { x1: x(i), x2: x(i), y1: top, y2: height - bottom, class: "grid" }),
                 svg("text", { x: x(i), y: height - 8, "text-anchor": "middle", class: "axis" }, label));
  }
  for (const s of series) {
    let path = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      path += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    const line = svg("path", { d: path, stroke: s.colour, class: "series" });
    line.append(svg("title", {}, s.name));
    chart.append(line);
    s.values.forEach((v, i) => {   // a minute with no neighbour is a dot, not an invisible line
      if (v !== null && s.values[i - 1] == null && s.values[i + 1] == null) {
        chart.append(svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: s.colour }));
      }
    });
  }
  chart.append(...hoverReadout(series, start, step, x, left, right, top, bottom, width, height, count));
  return chart;
}

// A vertical line and the values under the pointer (mouse or finger): time, then each series.
function hoverReadout(series, start, step, x, left, right, top, bottom, width, height, count) {
  const cursor = svg("line", { y1: top, y2: height - bottom, class: "cursor", visibility: "hidden" });
  const label = svg("text", { x: left + 4, y: top + 10, class: "readout" });
  const area = svg("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, fill: "transparent" });
  const show = event => {
    const box = area.getBoundingClientRect();
    const point = event.touches ? event.touches[0] : event;
    const i = Math.max(0, Math.min(count - 1, Math.round((point.clientX - box.left) / box.width * (count - 1))));
    const when = new Date((start + i * step) * 1000);
    const parts = series.filter(s => s.values[i] !== null).map(s => `${s.name} ${number(s.values[i])}${s.unit ? " " + s.unit : ""}`);
    cursor.setAttribute("x1", x(i));
    cursor.setAttribute("x2", x(i));
    cursor.setAttribute("visibility", "visible");
    label.textContent = `${when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}  ${parts.join("   ") || "nothing received"}`;
  };
  area.addEventListener("mousemove", show);
  area.addEventListener("touchmove", show, { passive: true });
  area.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); label.textContent = ""; });
  return [cursor, label, area];
}

// -- Watch: destinations, devices, log ----------------------------------------------------------
function renderDestinations(status) {
  const alerts = [];
  const cards = Object.entries(status.buffers).map(([name, b]) => {
    const dropped = Object.entries(b.dropped).filter(([, n]) => n).map(([reason, n]) => `${n} ${reason}`).join(", ");
    if (b.level === "error") {
      alerts.push(el("p", { class: "alert" }, el("b", {}, `${name}: `), b.advice || b.words,
                     b.advice ? el("a", { href: "#setup", "data-go": "setup" }, " Fix it in Set up") : ""));
    }
    return el("div", { class: `card level-${b.level}`, "data-buffer": name },
      el("div", { class: "card-head" }, el("b", {}, name), el("span", { class: "note" }, ` ${b.type}`)),
      el("p", { class: "words" }, b.words),
      b.advice ? el("p", { class: "advice" }, `What to do: ${b.advice}`) : null,
      el("p", { class: "note" }, `${b.delivered} delivered, ${b.queued} waiting` +
        (b.queued ? ` (oldest ${age(b.oldest_queued_age_s).replace(" ago", "")})` : "") +
        (b.catch_up_s ? `, caught up in about ${age(b.catch_up_s).replace(" ago", "")}` : "") +
        (dropped ? `, dropped: ${dropped}` : "") + (b.replayed ? `, ${b.replayed} sent again` : "")),
      b.last_error && b.level === "error" ? el("p", { class: "error" }, `Last error: ${b.last_error}`) : null,
      recentProblems(status, `oemgateway.buffer.${name}`));
  });
  $("destinations").replaceChildren(...(cards.length ? cards : [el("p", { class: "note" },
    "No destination yet: readings are not sent anywhere. Add one in ", el("a", { href: "#setup", "data-go": "setup" }, "Set up"), ".")]));
  $("alerts").replaceChildren(...alerts);
  const spool = status.spool;
  $("spool").textContent = `Waiting readings take ${Math.round(spool.memory_bytes / 1024)} KiB in memory and ` +
    `${Math.round(spool.disk_bytes / 1024)} KiB on disk (durability: ${spool.durability}` +
    (spool.disk_errors ? `; ${spool.disk_errors} disk errors` : "") + ").";
}

// The destination's last warnings and errors in the log, newest first.
function recentProblems(status, source) {
  const lines = ((status.log || {}).problems || []).filter(line => line.source === source).slice(-3).reverse();
  if (!lines.length) return null;
  return el("details", { class: "recent" }, el("summary", {}, `Last ${lines.length === 1 ? "problem" : `${lines.length} problems`} in the log`),
            lines.map(line => el("div", { class: `log ${line.level}` }, line.text)));
}

function renderDevices(status) {
  const rows = [];
  for (const [name, l] of Object.entries(status.listeners)) {
    const open = l.state === "open";
    rows.push(el("tr", { "data-listener": name },
      el("td", {}, name), el("td", {}, l.type),
      el("td", { class: open ? "ok" : "bad" }, open ? "connected" : l.state),
      el("td", {}, age(l.last_frame_age_s)), el("td", { class: "num" }, `${l.frames_good} good, ${l.frames_bad} bad`),
      el("td", { class: "error" }, l.error || "")));
    for (const [device, d] of Object.entries(l.devices || {})) {
      rows.push(el("tr", { class: "device" },
        el("td", {}, `↳ ${device}`), el("td", {}, ""),
        el("td", { class: d.state === "ok" ? "ok" : "bad" }, d.state === "ok" ? "connected" : d.state),
        el("td", {}, age(d.last_good_read_age_s)), el("td", { class: "num" }, `${d.errors} errors`),
        el("td", { class: "error" }, d.errors && d.last_error ? d.last_error : "")));
    }
  }
  $("devices").replaceChildren(rows.length ? el("table", { class: "devices" },
    el("thead", {}, el("tr", {}, ["name", "type", "state", "last good read", "frames", "last error"].map(h => el("th", {}, h)))),
    el("tbody", {}, rows)) : el("p", { class: "note" }, "No listener yet: nothing is read."));
}

function renderLog(id, lines) {
  const shown = lines.map(line => el("div", { class: line.level }, line.text));
  $(id).replaceChildren(...(shown.length ? shown : [el("div", { class: "note" }, "none")]));
}

// -- Set up -------------------------------------------------------------------------------------
async function loadConfig() {
  const [config, forms] = await Promise.all([api("GET", "/api/config"), state.forms ? null : api("GET", "/api/forms")]);
  if (config.code !== 200) return;
  if (forms && forms.code === 200) state.forms = forms.data;
  state.config = config.data;
  state.fileVersion = config.data.version;
  $("config-path").textContent = `Editing ${config.data.path}`;
  $("config-text").value = config.data.text;
  $("config-text").dataset.version = config.data.version;
  $("file-changed").classList.add("hidden");
  updateGutter(config.data.problems || []);
  showProblems(config.data.problems || [], []);
  buildForms(config.data.sections || {});
}

function buildForms(sections) {
  for (const [kind, holder, noun] of [["buffers", "buffer-forms", "destination"], ["listeners", "listener-forms", "listener"]]) {
    const existing = Object.entries(sections[kind] || {}).map(([name, values]) => pluginForm(kind, name, values));
    $(holder).replaceChildren(...existing, addPluginForm(kind, noun));
  }
  const nodes = sections.nodes || {};
  $("node-forms").replaceChildren(...Object.entries(nodes).filter(([, v]) => typeof v === "object")
    .map(([node, values]) => nodeForm(node, values)));
  renderNewNodes();
}

function typeForm(kind, type) { return ((state.forms || {})[kind] || {})[type] || null; }

// One setting's input: a list of choices, a number with its bounds, a masked secret, or text.
function settingInput(f, value) {
  const shown = value === undefined ? "" : Array.isArray(value) ? value.join(", ") : String(value);
  const hint = f.default === null || f.default === undefined || f.default === "" ? "" : `default: ${f.default}`;
  if (f.input === "choice") {
    const options = [el("option", { value: "" }, hint ? `(${hint})` : "(default)")]
      .concat(f.choices.map(c => el("option", { value: c, selected: String(c).toLowerCase() === shown.toLowerCase() ? true : null }, c)));
    return el("select", { name: f.key }, options);
  }
  if (f.secret) {
    return el("input", { name: f.key, type: "password", autocomplete: "new-password", value: shown === MASK ? "" : shown,
                         placeholder: shown === MASK ? "saved (type to replace)" : "", "data-saved": shown === MASK ? "1" : null });
  }
  return el("input", { name: f.key, type: f.input === "number" ? "number" : "text", value: shown,
                       step: f.step || null, min: f.min ?? null, max: f.max ?? null, placeholder: hint, inputmode: f.input === "number" ? "decimal" : null });
}

function settingRow(f, value) {
  return el("label", { class: "setting", "data-key": f.key },
    el("span", { class: "key" }, f.key, f.secret ? el("span", { class: "note" }, " (secret)") : ""),
    settingInput(f, value),
    f.description ? el("small", { class: "description" }, f.description) : null,
    el("span", { class: "error", "data-error": f.key }));
}

// The form's values: {key: value} of every field (a saved secret left empty is left out).
function formValues(form) {
  const values = {};
  for (const input of form.querySelectorAll("[name]")) {
    if (input.name === "section-name" || input.name === "section-type") continue;
    if (input.dataset.saved && input.value === "") continue;
    values[input.name] = input.value.trim();
  }
  return values;
}

// What changed since the form was drawn: only these keys are sent, so only their lines change.
function changedValues(form) {
  const now = formValues(form), before = JSON.parse(form.dataset.initial || "{}");
  const changed = {};
  for (const [key, value] of Object.entries(now)) if (value !== (before[key] ?? "")) changed[key] = value;
  return changed;
}

function sectionForm(path, fields, values, { isNew = false, onSaved = null, title = null, extraTop = [] } = {}) {
  const form = el("form", { class: "section", "data-section": path.join("/"), novalidate: true });
  form.append(el("h3", {}, title || path.slice(1).join(" ")), ...extraTop);
  const set = key => values[key] !== undefined && values[key] !== "";   // a setting the file sets is never hidden
  const main = fields.filter(f => !f.advanced || set(f.key)), more = fields.filter(f => f.advanced && !set(f.key));
  form.append(el("div", { class: "settings" }, main.map(f => settingRow(f, values[f.key]))));
  if (more.length) form.append(el("details", { class: "more" }, el("summary", {}, `More settings (${more.length})`),
                                  el("div", { class: "settings" }, more.map(f => settingRow(f, values[f.key])))));
  const result = el("p", { class: "result", role: "status" });
  const buttons = el("div", { class: "buttons" }, el("button", { type: "submit" }, isNew ? "Add" : "Save"));
  if (path[0] !== "nodes") buttons.append(el("button", { type: "button", class: "test", onclick: () => testSection(form, path, isNew) }, "Test"));
  if (!isNew) buttons.append(el("button", { type: "button", class: "remove", onclick: () => removeSection(form, path) }, "Remove"));
  form.append(el("span", { class: "error", "data-error": "" }), result, buttons);
  form.dataset.initial = JSON.stringify(isNew ? {} : formValues(form));
  form.dataset.version = state.fileVersion || "";
  form.addEventListener("input", () => form.classList.add("dirty"));
  form.addEventListener("change", event => { if (event.target.name !== "section-type") checkInline(form, currentPath(form, path), isNew); });
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const target = currentPath(form, path);
    const answer = await saveSection(target, isNew ? withType(form, formValues(form)) : changedValues(form), form);
    if (answer.code === 200 && onSaved) onSaved();
  });
  return form;
}

function currentPath(form, path) {
  const name = form.querySelector('[name="section-name"]');
  return name ? [path[0], name.value.trim()] : path;
}

function withType(form, values) {
  const type = form.querySelector('[name="section-type"]');
  const out = type ? Object.assign({ type: type.value }, values) : values;
  for (const key of Object.keys(out)) if (out[key] === "") delete out[key];
  return out;
}

function pluginForm(kind, name, values) {
  const spec = typeForm(kind, values.type);
  const fields = spec ? spec.fields : Object.keys(values).filter(k => k !== "type" && typeof values[k] !== "object")
    .map(key => ({ key, input: "text", default: null, description: "", secret: values[key] === MASK }));
  const known = new Set(fields.map(f => f.key).concat(["type"]));
  const unknown = Object.keys(values).filter(k => !known.has(k) && typeof values[k] !== "object")
    .map(key => ({ key, input: "text", default: null, description: "not a setting of this type: it is ignored (remove it?)", secret: values[key] === MASK }));
  return sectionForm([kind, name], fields.concat(unknown), values,
    { title: `${name} (${values.type || "no type"})`, extraTop: spec ? [el("p", { class: "note" }, spec.summary)] : [] });
}

// "Add a destination": the type chosen from a list of what exists; its sample starts the form.
function addPluginForm(kind, noun) {
  const types = Object.keys((state.forms || {})[kind] || {});
  const holder = el("div", { class: "add" });
  const select = el("select", { name: "choose-type", "aria-label": `type of the new ${noun}` },
    el("option", { value: "" }, `Add a ${noun}: choose its type…`), types.map(t => el("option", { value: t }, `${t}: ${typeForm(kind, t).summary}`)));
  select.addEventListener("change", () => {
    holder.querySelector("form")?.remove();
    if (!select.value) return;
    const spec = typeForm(kind, select.value);
    const taken = new Set(Object.keys(((state.config || {}).sections || {})[kind] || {}));
    let name = select.value, i = 2;
    while (taken.has(name)) name = `${select.value}${i++}`;
    const top = [el("p", { class: "note" }, spec.summary),
      el("label", { class: "setting" }, el("span", { class: "key" }, "name"), el("input", { name: "section-name", value: name }),
         el("small", { class: "description" }, "A name of your choice for this section."), el("span", { class: "error", "data-error": "section-name" })),
      el("input", { type: "hidden", name: "section-type", value: select.value })];
    const form = sectionForm([kind, name], spec.fields, spec.start, { isNew: true, title: `New ${select.value} ${noun}`, extraTop: top,
      onSaved: () => { select.value = ""; } });
    holder.append(form);
    form.querySelector("input:not([type=hidden])")?.focus();
  });
  holder.append(select);
  return holder;
}

const NODE_FIELDS = [
  { key: "nodename", input: "text", description: "The node's name (in emoncms, MQTT topics, files) instead of its number." },
  { key: "names", input: "list", description: "Input names, in order, separated by commas." },
  { key: "units", input: "list", description: "Units, in the same order (W, V, °C, kWh...): shown here and sent to Home Assistant." },
  { key: "scales", input: "list", description: "Multipliers, in the same order (0.01 turns 23050 into 230.5); missing ones are 1." },
  { key: "datacodes", input: "list", description: "For radio nodes sending bytes: one struct code per value (h: 16-bit signed, L: 32-bit unsigned...)." },
].map(f => Object.assign({ default: null, secret: false }, f));

function nodeForm(node, values) {
  return sectionForm(["nodes", node], NODE_FIELDS, values, { title: values.nodename ? `${values.nodename} (node ${node})` : `node ${node}` });
}

// Nodes heard but not in [nodes]: their raw values, and a form to name them.
function renderNewNodes() {
  if (!state.status || !state.config) return;
  const listed = new Set(Object.keys((state.config.sections || {}).nodes || {}));
  const holder = $("new-nodes");
  if (holder.querySelector("form.dirty") || holder.contains(document.activeElement)) return;   // being typed in
  const fresh = Object.entries(state.status.nodes).filter(([node]) => !listed.has(node));
  holder.replaceChildren(...fresh.map(([node, n]) => {
    const raw = Object.values(n.values || {}).map(number).join("  ");
    const form = sectionForm(["nodes", node], NODE_FIELDS.slice(0, 3), {}, { isNew: true, title: `New node ${node}: heard ${age(n.last_seen_age_s)}`,
      extraTop: [el("p", { class: "raw" }, "Last frame: ", el("code", {}, raw || "(no values)"),
                    el("span", { class: "note" }, ` (${Object.keys(n.values || {}).length} values): name them below.`))] });
    form.querySelector('[name="names"]').placeholder = Object.keys(n.values || {}).map((_, i) => `input${i + 1}`).join(", ");
    return form;
  }));
}

// -- Set up: checking, saving, testing ----------------------------------------------------------
function showFormProblems(form, problems, warnings) {
  for (const span of form.querySelectorAll("[data-error]")) span.textContent = "";
  for (const row of form.querySelectorAll(".setting")) row.classList.remove("invalid");
  const path = form.dataset.section.split("/");
  for (const problem of problems.concat((warnings || []).map(w => Object.assign({}, w, { warning: true })))) {
    const mine = !problem.section || !problem.section.length || problem.section.join("/") === path.join("/") ||
                 problem.section[1] === path[1];
    if (!mine && problem.warning) continue;
    const span = form.querySelector(`[data-error="${CSS.escape(problem.key || "")}"]`) || form.querySelector('[data-error=""]');
    span.textContent = (span.textContent ? span.textContent + " " : "") + (problem.warning ? "Warning: " : "") +
      (problem.key ? shortMessage(problem.message) : problem.message);
    span.classList.toggle("warning-text", Boolean(problem.warning));
    const row = span.closest(".setting");
    if (row && !problem.warning) row.classList.add("invalid");
  }
}

// A message shown at its field, without the file, line and section it names (the field says that).
function shortMessage(message) {
  return message.replace(/^\S*:\d+: /, "").replace(/^(\[+[^\]]+\]+ ?)+(?:[\w.-]+ = '[^']*'|key '[^']*'|'[^']*')?:\s*/, "");
}

// Inline validation: the form's values checked by the gateway as --check would, nothing saved.
async function checkInline(form, path, isNew) {
  const values = isNew ? withType(form, formValues(form)) : changedValues(form);
  if (!path[path.length - 1]) return;
  const { code, data } = await api("POST", "/api/config/section/check", { section: path, values });
  if (code === 200 || code === 422) showFormProblems(form, data.problems || [], data.warnings || []);
}

async function saveSection(path, values, form) {
  const message = $("setup-message");
  const version = form ? form.dataset.version : state.fileVersion;
  const { code, data } = await api("POST", "/api/config/section", { section: path, values, version });
  const result = form ? form.querySelector(".result") : null;
  if (code === 200) {
    message.className = "message ok";
    message.textContent = `Saved${data.applied ? " and applied" : ""}: ${path.join(" › ")}.`;
    if (result) result.textContent = "";
    await loadConfig();
    return { code, data };
  }
  const text = code === 409 ? data.error : code === 422 ? "Not saved: see the problems below the fields." : problemsText(data);
  message.className = "message error";
  message.textContent = text;
  if (form) {
    result.className = "result error";
    result.textContent = text;
    showFormProblems(form, data.problems || [], []);
  }
  return { code, data };
}

async function removeSection(form, path) {
  if (!confirm(`Remove ${path.join(" › ")} from the config?`)) return;
  const { code, data } = await api("POST", "/api/config/section", { section: path, remove: true, version: form.dataset.version });
  if (code === 200) { $("setup-message").className = "message ok"; $("setup-message").textContent = `Removed ${path.join(" › ")}.`; await loadConfig(); return; }
  form.querySelector(".result").className = "result error";
  form.querySelector(".result").textContent = problemsText(data);
}

async function testSection(form, path, isNew) {
  const result = form.querySelector(".result");
  const target = currentPath(form, path);
  result.className = "result note";
  result.textContent = path[0] === "buffers" ? "Sending one reading…" : "Reading once…";
  const { code, data } = await api("POST", "/api/test", { section: target, values: isNew ? withType(form, formValues(form)) : changedValues(form) });
  if (code === 422) { showFormProblems(form, data.problems || [], []); }
  result.className = `result ${data.ok ? "ok" : "error"}`;
  result.textContent = (data.ok ? "Test passed: " : "Test failed: ") + (data.message || problemsText(data)) +
    (data.advice ? ` — ${data.advice}` : "");
}

// Another save, or an edit of the file on disk, while a form or the editor has unsaved changes.
function noticeFileChange(version) {
  if (!version || !state.fileVersion || version === state.fileVersion) return;
  const dirty = document.querySelectorAll("form.section.dirty");
  const editorDirty = $("config-text").value !== (state.config || {}).text;
  if (!dirty.length && !editorDirty) { loadConfig(); return; }
  const text = "The config file changed since this page read it (saved elsewhere or edited on the machine). " +
               "Your unsaved entries are kept here, but saving them now is refused: note them, then reload.";
  for (const form of dirty) {
    if (form.querySelector(".changed")) continue;
    form.prepend(el("p", { class: "warning changed" }, text, " ", el("button", { type: "button", onclick: loadConfig }, "Reload")));
  }
  if (editorDirty) { $("file-changed").textContent = text; $("file-changed").classList.remove("hidden"); }
}

// -- the config file ----------------------------------------------------------------------------
function updateGutter(problems) {
  const count = $("config-text").value.split("\n").length;
  const bad = new Map(problems.filter(p => p.line).map(p => [p.line, p.message]));
  const lines = [];
  for (let i = 1; i <= count; i++) {
    lines.push(el("div", { class: bad.has(i) ? "bad" : null, title: bad.get(i) || null, "data-line": i }, i));
  }
  $("gutter").replaceChildren(...lines);
  $("gutter").scrollTop = $("config-text").scrollTop;
}

function showProblems(problems, warnings) {
  const items = problems.map(p => el("li", { "data-line": p.line || null }, `${p.line ? `line ${p.line}: ` : ""}${p.message}`))
    .concat((warnings || []).map(w => el("li", { class: "note", "data-line": w.line || null }, `${w.line ? `line ${w.line}: ` : ""}warning: ${w.message}`)));
  for (const item of items) if (item.dataset.line) item.addEventListener("click", () => selectLine(Number(item.dataset.line)));
  $("config-problems").replaceChildren(...items);
  updateGutter(problems);
}

function selectLine(number) {
  const area = $("config-text");
  const lines = area.value.split("\n");
  const start = lines.slice(0, number - 1).join("\n").length + (number > 1 ? 1 : 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[number - 1] || "").length);
  const lineHeight = area.scrollHeight / lines.length;
  area.scrollTop = Math.max(0, (number - 5) * lineHeight);
}

async function sendFile(save) {
  const body = { text: $("config-text").value, version: $("config-text").dataset.version };
  const { code, data } = await api("POST", save ? "/api/config" : "/api/config/check", body);
  const message = $("config-message");
  const problems = data.problems || [];
  message.className = code === 200 ? "message ok" : "message error";
  if (code === 200) message.textContent = save ? `Saved${data.applied ? " and applied" : ""}.` : "Valid: the gateway would accept this file (nothing saved yet).";
  else if (code === 409) message.textContent = data.error;
  else if (code === 422) message.textContent = `${save ? "Not saved: " : "Not valid (nothing saved): "}${problems.length} problem${problems.length === 1 ? "" : "s"}, listed below and marked in the line numbers.`;
  else message.textContent = problemsText(data);
  showProblems(problems, data.warnings || []);
  if (save && code === 200) await loadConfig();
}

// -- start --------------------------------------------------------------------------------------
function showTab(name) {
  if (!["watch", "setup", "file"].includes(name)) name = "watch";
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("hidden", tab.id !== `tab-${name}`);
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name !== "watch" && !state.config) loadConfig();
}

async function start() {
  const local = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
  $("tls-warning").classList.toggle("hidden", location.protocol === "https:" || local);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  document.addEventListener("click", event => {
    const go = event.target.closest("[data-go]");
    if (go) { event.preventDefault(); showTab(go.dataset.go); }
  });
  $("config-check").addEventListener("click", () => sendFile(false));
  $("config-save").addEventListener("click", () => sendFile(true));
  $("config-reload").addEventListener("click", loadConfig);
  $("config-text").addEventListener("input", () => updateGutter([]));
  $("config-text").addEventListener("scroll", () => { $("gutter").scrollTop = $("config-text").scrollTop; });
  $("chart-close").addEventListener("click", () => { $("chart-panel").classList.add("hidden"); state.chart = null; });
  for (const button of document.querySelectorAll("#chart-panel [data-minutes]")) {
    button.addEventListener("click", () => { state.chart.minutes = Number(button.dataset.minutes); drawChart(); });
  }
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") poll(); else stopPolling(); });
  const { code, data } = await api("GET", "/api/session");
  if (code === 200) { state.csrf = data.csrf; showMain(); } else showLogin();
}

document.addEventListener("DOMContentLoaded", start);
