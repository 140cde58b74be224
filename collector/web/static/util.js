// Small helpers shared by every page: DOM building, JSON fetching, formatting.
// No framework and no build step: the browser loads these ES modules as they are.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

// replaceChildren that skips null/false/undefined (conditional parts) and flattens arrays.
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// The Prometheus API envelope, unwrapped. A missing endpoint (404: an agent without that
// API) is not an error the page reports as a failure: callers show "not available".
export async function api(path, init) {
  let response;
  try {
    response = await fetch(path, {cache: "no-store", ...init});
  } catch (err) {
    return {ok: false, status: 0, error: `cannot reach the agent: ${err.message}`};
  }
  if (response.status === 404) return {ok: false, status: 404, error: `${path}: not available`};
  let body = null;
  try {
    body = await response.json();
  } catch {
    return {ok: false, status: response.status, error: `${path}: HTTP ${response.status}`};
  }
  if (!response.ok || body.status !== "success") {
    return {ok: false, status: response.status, error: body.error || `HTTP ${response.status}`};
  }
  return {ok: true, status: response.status, data: body.data};
}

export function postJSON(path, payload) {
  return api(path, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(payload),
  });
}

// "12 s ago" with the exact time (local and UTC) on hover.
export function ago(iso, now = Date.now()) {
  if (!iso || iso.startsWith("0001-")) return el("span", {class: "muted"}, "never");
  const then = new Date(iso);
  const seconds = Math.max(0, (now - then.getTime()) / 1000);
  let text;
  if (seconds < 60) text = `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ago`;
  else if (seconds < 3600) text = `${Math.floor(seconds / 60)} min ago`;
  else text = `${(seconds / 3600).toFixed(1)} h ago`;
  const exact = `${then.toLocaleString()} (${then.toISOString()})`;
  return el("time", {datetime: iso, title: exact}, text);
}

export function duration(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  if (seconds < 1) return `${(seconds * 1000).toFixed(1)} ms`;
  return `${seconds.toFixed(2)} s`;
}

export function number(value, digits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", {maximumFractionDigits: digits});
}

export function bytes(value) {
  if (value === undefined || value === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${n.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// A label set as chips; `highlight` maps a name to a CSS class (added, changed).
export function labelChips(labels, highlight = {}) {
  const names = Object.keys(labels || {}).sort();
  if (!names.length) return el("span", {class: "muted"}, "no labels");
  return el("span", {class: "labels"}, names.map((name) =>
    el("span", {class: `chip ${highlight[name] || ""}`.trim(), "data-label": name},
      el("b", {}, name), "=", JSON.stringify(labels[name]))));
}

export function labelsText(labels) {
  return Object.keys(labels || {}).sort().map((k) => `${k}="${labels[k]}"`).join(" ");
}

export function notice(kind, text) {
  return el("p", {class: `notice ${kind}`}, text);
}

// A horizontal bar list: [{name, value}] scaled to the largest.
export function bars(rows, {unit = ""} = {}) {
  if (!rows || !rows.length) return el("p", {class: "muted"}, "none");
  const max = Math.max(...rows.map((r) => r.value), 1);
  return el("table", {class: "bars"}, el("tbody", {}, rows.map((row) => el("tr", {},
    el("td", {class: "name"}, row.name),
    el("td", {class: "bar"}, el("span", {style: `width:${(100 * row.value / max).toFixed(1)}%`})),
    el("td", {class: "num"}, `${number(row.value)}${unit}`)))));
}
