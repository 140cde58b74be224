// Remote write: per destination, samples/s sent, failed, retried, pending, shards and
// write-ahead queue bytes, with the last 15 minutes drawn as inline SVG from the agent's ring
// buffer (api/v1/status/remote_write, `history`).

import {api, bytes, el, notice, number} from "./util.js";

const SVG = "http://www.w3.org/2000/svg";
const SERIES = [
  {key: "sent", label: "sent/s", cls: "sent"},
  {key: "retried", label: "retried/s", cls: "retried"},
  {key: "failed", label: "failed/s", cls: "failed"},
];

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// A line chart of per-second rates over `span` seconds: x is "seconds ago", y from 0 to the
// largest value (rounded up to a readable number).
export function chart(history, {width = 560, height = 150} = {}) {
  const pad = {left: 44, right: 8, top: 10, bottom: 20};
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const points = history.points || [];
  const span = history.span || 900;
  const peak = Math.max(0, ...points.flatMap((p) => SERIES.map((s) => p[s.key] || 0)));
  const top = niceCeil(peak);
  const x = (ago) => pad.left + w * (1 - Math.min(ago, span) / span);
  const y = (v) => pad.top + h * (1 - v / top);
  const root = svg("svg", {class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `samples per second, last ${Math.round(span / 60)} minutes`});
  for (const frac of [0, 0.5, 1]) {
    const yy = y(top * frac);
    root.append(svg("line", {class: "grid", x1: pad.left, x2: width - pad.right, y1: yy, y2: yy}),
      svg("text", {class: "axis", x: pad.left - 6, y: yy + 4, "text-anchor": "end"},
        compact(top * frac)));
  }
  for (const minutes of [15, 10, 5, 0]) {
    root.append(svg("text", {class: "axis", x: x(minutes * 60), y: height - 4,
      "text-anchor": minutes === 15 ? "start" : minutes === 0 ? "end" : "middle"},
    minutes ? `-${minutes}m` : "now"));
  }
  if (points.length < 2) {
    root.append(svg("text", {class: "axis empty", x: pad.left + w / 2, y: pad.top + h / 2,
      "text-anchor": "middle"}, "collecting: a point every " + (history.interval || 10) + " s"));
  }
  for (const s of SERIES) {
    if (!points.length) continue;
    const coords = points.map((p) => `${x(p.ago).toFixed(1)},${y(p[s.key] || 0).toFixed(1)}`);
    root.append(svg("polyline", {class: `line ${s.cls}`, "data-series": s.key, points: coords.join(" ")}));
  }
  return root;
}

function niceCeil(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

function compact(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(value < 10 ? 1 : 0)}`;
}

function stat(label, value, cls = "") {
  return el("div", {class: `tile ${cls}`, "data-stat": label},
    el("span", {class: "value"}, value), el("span", {class: "label"}, label));
}

function card(queue) {
  const last = (queue.history?.points || []).at(-1) || {};
  return el("section", {class: "card queue", "data-queue": queue.name},
    el("h2", {}, queue.name, " ", el("span", {class: "muted url"}, queue.url)),
    el("div", {class: "tiles"},
      stat("samples/s sent", queue.samplesPerSecond === null || queue.samplesPerSecond === undefined
        ? "–" : number(queue.samplesPerSecond, 1)),
      stat("sent", number(queue.samplesSent)),
      stat("failed", number(queue.samplesFailed), queue.samplesFailed ? "bad" : ""),
      stat("retried", number(queue.samplesRetried), last.retried ? "warn" : ""),
      stat("pending", number(queue.samplesPending)),
      stat("shards", number(queue.shards)),
      stat("write-ahead queue", bytes(queue.diskQueueBytes)),
      stat("remote write", queue.protocol || "1.0", queue.fallbackReason ? "warn" : "")),
    queue.fallbackReason ? notice("warn", `Configured for remote write ${queue.protocolConfigured}; `
      + `sending ${queue.protocol} since the receiver refused it: ${queue.fallbackReason}`) : null,
    el("div", {class: "legend"}, SERIES.map((s) => el("span", {class: `key ${s.cls}`}, s.label))),
    chart(queue.history || {}));
}

export function mount(root) {
  const list = el("div", {id: "queues"});
  root.append(el("h1", {}, "Remote write"), list);
  return {
    async refresh() {
      const answer = await api("api/v1/status/remote_write");
      if (!answer.ok) {
        list.replaceChildren(notice("error", answer.error));
        return;
      }
      list.replaceChildren(...(answer.data.length ? answer.data.map(card)
        : [notice("info", "No remote_write destination is configured.")]));
    },
  };
}
