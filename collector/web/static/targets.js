// Targets: grouped by scrape pool (collapsible), filtered by health and free text. A target
// opens its relabel steps (api/v1/targets/relabel_steps) and its cardinality
// (api/v1/status/cardinality for that target).

import {renderSteps} from "./relabel.js";
import {ago, api, bars, duration, el, labelChips, labelsText, notice, number} from "./util.js";

const HEALTHS = ["all", "up", "down", "unknown"];
// Fixed widths, so that every pool's table lines up with the others.
const COLUMNS = [["Endpoint", "23%"], ["State", "6%"], ["Labels", "28%"], ["Last scrape", "9%"],
  ["Duration", "7%"], ["Series", "6%"], ["Error", "21%"]];
const NUMERIC = new Set(["Duration", "Series"]);

const state = {
  text: "",
  health: "all",
  collapsed: new Set(),
  open: new Set(),
  targets: [],
  series: new Map(),
  seriesAvailable: true,
};
const panels = new Map();

function keyOf(target) {
  return `${target.scrapePool}\u0000${target.scrapeUrl}\u0000${labelsText(target.labels)}`;
}

function matches(target) {
  if (state.health !== "all" && target.health !== state.health) return false;
  if (!state.text) return true;
  const haystack = [target.scrapePool, target.scrapeUrl, target.lastError, target.health,
    labelsText(target.labels)].join(" ").toLowerCase();
  return state.text.toLowerCase().split(/\s+/).every((word) => haystack.includes(word));
}

export function mount(root) {
  const search = el("input", {
    id: "target-filter", type: "search", placeholder: "filter: pool, endpoint, label, error…",
    value: state.text, "aria-label": "Filter targets",
  });
  search.addEventListener("input", () => {
    state.text = search.value.trim();
    draw();
  });
  const healthButtons = el("span", {class: "segmented", role: "group", "aria-label": "Health"});
  const list = el("div", {id: "target-pools"});
  const summary = el("span", {class: "muted", id: "target-summary"});
  root.append(
    el("h1", {}, "Targets"),
    el("div", {class: "toolbar"}, healthButtons, search,
      el("button", {onclick: () => setAll(false)}, "Expand all"),
      el("button", {onclick: () => setAll(true)}, "Collapse all"), summary),
    list);

  function setAll(collapsed) {
    state.collapsed = collapsed ? new Set(state.targets.map((t) => t.scrapePool)) : new Set();
    draw();
  }

  function drawHealthButtons() {
    const counts = {all: state.targets.length, up: 0, down: 0, unknown: 0};
    for (const t of state.targets) counts[t.health] = (counts[t.health] || 0) + 1;
    healthButtons.replaceChildren(...HEALTHS.map((h) => el("button", {
      class: h === state.health ? "on" : "", "data-health": h, "aria-pressed": String(h === state.health),
      onclick: () => {
        state.health = h;
        draw();
      },
    }, `${h} (${counts[h] || 0})`)));
  }

  function draw() {
    drawHealthButtons();
    const pools = new Map();
    for (const target of state.targets) {
      if (!pools.has(target.scrapePool)) pools.set(target.scrapePool, []);
      pools.get(target.scrapePool).push(target);
    }
    let shown = 0;
    const groups = [];
    for (const [pool, all] of [...pools].sort(([a], [b]) => a.localeCompare(b))) {
      const visible = all.filter(matches);
      shown += visible.length;
      if (!visible.length) continue;
      groups.push(poolGroup(pool, all, visible));
    }
    if (!state.targets.length) groups.push(notice("info", "No active targets."));
    else if (!shown) groups.push(notice("info", "No target matches the filter."));
    list.replaceChildren(...groups);
    summary.textContent = `${shown} of ${state.targets.length} targets shown`;
  }

  function poolGroup(pool, all, visible) {
    const up = all.filter((t) => t.health === "up").length;
    const series = all.reduce((n, t) => n + (state.series.get(keyOf(t)) || 0), 0);
    const details = el("details", {class: "pool card", "data-pool": pool,
      open: !state.collapsed.has(pool)},
    el("summary", {},
      el("span", {class: "pool-name"}, pool),
      el("span", {class: `badge ${up === all.length ? "ok" : up ? "warn" : "bad"}`},
        `${up}/${all.length} up`),
      state.seriesAvailable ? el("span", {class: "muted"}, `${number(series)} series`) : null),
    el("table", {class: "targets"},
      el("colgroup", {}, COLUMNS.map(([, width]) => el("col", {style: `width:${width}`}))),
      el("thead", {}, el("tr", {}, COLUMNS.map(([name]) =>
        el("th", {class: NUMERIC.has(name) ? "num" : ""}, name)))),
      el("tbody", {}, visible.flatMap(targetRows))));
    details.addEventListener("toggle", () => {
      if (details.open) state.collapsed.delete(pool);
      else state.collapsed.add(pool);
    });
    return details;
  }

  function targetRows(target) {
    const key = keyOf(target);
    const isOpen = state.open.has(key);
    const series = state.series.get(key);
    const toggle = () => {
      if (state.open.has(key)) state.open.delete(key);
      else state.open.add(key);
      draw();
    };
    const row = el("tr", {class: `target ${isOpen ? "open" : ""}`, "data-url": target.scrapeUrl,
      "data-health": target.health},
    el("td", {},
      el("button", {class: "disclose", "aria-expanded": String(isOpen), title: "relabel steps and cardinality",
        onclick: (event) => {
          event.stopPropagation();
          toggle();
        }}, isOpen ? "▾" : "▸"),
      el("a", {href: target.scrapeUrl, onclick: (e) => e.stopPropagation()}, target.scrapeUrl)),
    el("td", {}, el("span", {class: `health ${target.health}`}, target.health)),
    el("td", {}, labelChips(target.labels)),
    el("td", {class: "when"}, ago(target.lastScrape)),
    el("td", {class: "num"}, duration(target.lastScrapeDuration)),
    el("td", {class: "num series"}, series === undefined ? "–" : number(series)),
    el("td", {class: "error"}, target.lastError));
    row.addEventListener("click", () => {
      if (!window.getSelection().toString()) toggle();
    });
    if (!isOpen) return [row];
    if (!panels.has(key)) panels.set(key, detailPanel(target));
    return [row, el("tr", {class: "detail"}, el("td", {colspan: 7}, panels.get(key)))];
  }

  return {
    async refresh() {
      const [targets, cardinality] = await Promise.all([
        api("api/v1/targets?state=active"), api("api/v1/status/cardinality?limit=0")]);
      if (!targets.ok) {
        list.replaceChildren(notice("error", targets.error));
        return;
      }
      state.targets = targets.data.activeTargets;
      state.seriesAvailable = cardinality.ok;
      state.series = new Map();
      if (cardinality.ok) {
        for (const t of cardinality.data.activeTargets) state.series.set(keyOf(t), t.series);
      }
      const live = new Set(state.targets.map(keyOf));
      for (const key of [...panels.keys()]) if (!live.has(key)) panels.delete(key);
      draw();
    },
  };
}

// The panel under an opened target: loaded once, reloaded by its own button.
function detailPanel(target) {
  const steps = el("section", {class: "relabel-steps"}, el("p", {class: "muted"}, "loading…"));
  const card = el("section", {class: "target-cardinality"}, el("p", {class: "muted"}, "loading…"));
  const panel = el("div", {class: "detail-panel"},
    el("div", {class: "detail-head"},
      el("h3", {}, "Relabel steps"),
      el("button", {class: "small", onclick: load}, "reload")),
    steps, el("h3", {}, "Cardinality"), card);

  async function load() {
    const labels = encodeURIComponent(JSON.stringify(target.discoveredLabels || {}));
    const pool = encodeURIComponent(target.scrapePool);
    const [relabel, cardinality] = await Promise.all([
      api(`api/v1/targets/relabel_steps?scrapePool=${pool}&labels=${labels}`),
      api(`api/v1/status/cardinality?limit=10&scrapePool=${pool}` +
        `&scrapeUrl=${encodeURIComponent(target.scrapeUrl)}`)]);
    if (relabel.ok) {
      steps.replaceChildren(relabel.data.steps.length
        ? renderSteps(target.discoveredLabels || {}, relabel.data.steps)
        : el("p", {class: "muted"}, "This pool has no relabel_configs: the discovered labels are used as they are."));
    } else {
      steps.replaceChildren(relabel.status === 404
        ? notice("warn", "The relabel steps API (api/v1/targets/relabel_steps) is not available in this agent.")
        : notice("error", relabel.error));
    }
    const mine = cardinality.ok && cardinality.data.activeTargets.find(
      (t) => labelsText(t.labels) === labelsText(target.labels));
    card.replaceChildren(mine ? cardinalityView(mine)
      : cardinality.ok ? notice("info", "No series yet: this target has not been scraped.")
        : notice(cardinality.status === 404 ? "warn" : "error", cardinality.status === 404
          ? "The cardinality API is not available in this agent." : cardinality.error));
  }
  load();
  return panel;
}

export function cardinalityView(t) {
  const c = t.churn;
  const l = t.limits;
  const limitRows = [];
  if (l.sampleLimit) {
    limitRows.push(["sample_limit", `${number(l.sampleLimit)} (${l.sampleLimitMode})`,
      l.scrapesLimited.sample_limit, l.samplesLimited.sample_limit]);
  }
  if (l.labelLimit || "label_limit" in l.scrapesLimited) {
    limitRows.push(["label limits", l.labelLimit ? number(l.labelLimit) : "length limits",
      l.scrapesLimited.label_limit, undefined]);
  }
  if (l.seriesLimit) {
    limitRows.push(["series_limit", `${number(l.windowSeries)} of ${number(l.seriesLimit)} per ${l.seriesLimitWindow}`,
      l.scrapesLimited.series_limit, l.samplesLimited.series_limit]);
  }
  return el("div", {class: "cardinality"},
    el("div", {class: "tiles"},
      tile("series", number(t.series)),
      tile("added last scrape", `+${number(c.lastAdded)}`),
      tile("removed last scrape", `−${number(c.lastRemoved)}`),
      tile(`churn, last ${c.recentScrapes} scrapes`, `+${number(c.recentAdded)} / −${number(c.recentRemoved)}`)),
    el("div", {class: "columns"},
      el("div", {}, el("h4", {}, "Top metric names by series"), bars(t.seriesCountByMetricName)),
      el("div", {}, el("h4", {}, "Top label names by distinct values"),
        bars(t.labelValueCountByLabelName))),
    limitRows.length ? el("div", {},
      el("h4", {}, "Limits"),
      el("table", {class: "limits"},
        el("thead", {}, el("tr", {}, el("th", {}, "limit"), el("th", {}, "setting"),
          el("th", {class: "num"}, "scrapes that hit it"), el("th", {class: "num"}, "samples dropped"))),
        el("tbody", {}, limitRows.map(([name, setting, scrapes, samples]) =>
          el("tr", {class: scrapes ? "hit" : ""}, el("td", {}, name), el("td", {}, setting),
            el("td", {class: "num"}, number(scrapes || 0)),
            el("td", {class: "num"}, samples === undefined ? "scrape fails" : number(samples)))))),
      l.refusedByMetricName.length ? el("div", {},
        el("h4", {}, `Series refused by series_limit this window, by metric name (${number(l.refusedSeries)})`),
        bars(l.refusedByMetricName)) : null) : null);
}

function tile(label, value) {
  return el("div", {class: "tile"}, el("span", {class: "value"}, value), el("span", {class: "label"}, label));
}
