// Service discovery: per scrape pool, targets discovered, active, dropped (and failed), and
// each dropped target with the relabel rule that dropped it (asked of
// api/v1/targets/relabel_steps when the pool is opened, a page of targets at a time).

import {droppingRule, ruleText} from "./relabel.js";
import {api, el, fill, labelChips, notice, number} from "./util.js";

const PAGE = 25;
const state = {open: new Set(), shown: new Map()};
const verdicts = new Map();

export function mount(root) {
  const list = el("div", {id: "sd-pools"});
  root.append(el("h1", {}, "Service discovery"),
    el("p", {class: "muted"}, "Discovered targets go through each pool's relabel_configs: ",
      "those left are active and scraped, the rest are dropped by a rule. Failed targets ",
      "(no address, bad interval…) are logged by the agent."),
    list);

  return {
    async refresh() {
      const [pools, dropped] = await Promise.all([
        api("api/v1/scrape_pools"), api("api/v1/targets?state=dropped")]);
      if (!dropped.ok) {
        list.replaceChildren(notice("error", dropped.error));
        return;
      }
      const byPool = new Map();
      for (const t of dropped.data.droppedTargets) {
        if (!byPool.has(t.scrapePool)) byPool.set(t.scrapePool, []);
        byPool.get(t.scrapePool).push(t);
      }
      let rows;
      if (pools.ok) {
        rows = pools.data.pools;
      } else {
        // An agent without api/v1/scrape_pools: count what api/v1/targets lists.
        const active = await api("api/v1/targets?state=active");
        const counts = new Map();
        for (const t of active.ok ? active.data.activeTargets : []) {
          counts.set(t.scrapePool, (counts.get(t.scrapePool) || 0) + 1);
        }
        const names = new Set([...counts.keys(), ...byPool.keys()]);
        rows = [...names].sort().map((name) => ({scrapePool: name, active: counts.get(name) || 0,
          dropped: (dropped.data.droppedTargetCounts || {})[name] || 0}));
      }
      list.replaceChildren(...(rows.length ? rows.map((p) => poolCard(p, byPool.get(p.scrapePool) || []))
        : [notice("info", "No scrape pools.")]));
    },
  };
}

function poolCard(pool, dropped) {
  const name = pool.scrapePool;
  const total = pool.discovered ?? (pool.active + pool.dropped);
  const share = (n) => (total ? (100 * n / total).toFixed(1) : 0);
  const body = el("div", {class: "dropped-list"});
  const details = el("details", {class: "pool card", "data-pool": name, open: state.open.has(name)},
    el("summary", {},
      el("span", {class: "pool-name"}, name),
      el("span", {class: "counts"},
        count("discovered", pool.discovered), count("active", pool.active),
        count("dropped", pool.dropped), count("failed", pool.failed),
        pool.series !== undefined ? count("series", pool.series) : null)),
    el("div", {class: "stack", title: `${pool.active} active, ${pool.dropped} dropped of ${total}`},
      el("span", {class: "active", style: `width:${share(pool.active)}%`}),
      el("span", {class: "dropped", style: `width:${share(pool.dropped)}%`}),
      el("span", {class: "failed", style: `width:${share(pool.failed || 0)}%`})),
    body);
  const fill = () => fillDropped(body, name, dropped, pool.dropped);
  details.addEventListener("toggle", () => {
    if (details.open) {
      state.open.add(name);
      fill();
    } else {
      state.open.delete(name);
    }
  });
  if (details.open) fill();
  return details;
}

function count(label, value) {
  if (value === undefined) return null;
  return el("span", {class: `count ${label} ${value ? "" : "zero"}`, "data-count": label},
    el("b", {}, number(value)), ` ${label}`);
}

function fillDropped(body, pool, dropped, total) {
  if (!dropped.length) {
    body.replaceChildren(el("p", {class: "muted"}, total
      ? `${number(total)} dropped; none kept for display (keep_dropped_targets).`
      : "No target was dropped."));
    return;
  }
  const shown = Math.min(state.shown.get(pool) || PAGE, dropped.length);
  const rows = dropped.slice(0, shown).map((t) => droppedRow(pool, t));
  const more = shown < dropped.length ? el("button", {onclick: () => {
    state.shown.set(pool, shown + PAGE);
    fillDropped(body, pool, dropped, total);
  }}, `show ${Math.min(PAGE, dropped.length - shown)} more of ${dropped.length - shown}`) : null;
  fill(body,
    el("table", {class: "dropped-targets"},
      el("thead", {}, el("tr", {}, el("th", {}, "Discovered labels"), el("th", {}, "Dropped by"))),
      el("tbody", {}, rows)),
    total > dropped.length
      ? el("p", {class: "muted"}, `${number(total - dropped.length)} more dropped targets are not kept (keep_dropped_targets).`)
      : null,
    more);
}

function droppedRow(pool, target) {
  const cell = el("td", {class: "verdict"}, el("span", {class: "muted"}, "…"));
  const labels = target.discoveredLabels;
  const key = `${pool}\u0000${JSON.stringify(labels)}`;
  const draw = (verdict) => cell.replaceChildren(verdict);
  if (verdicts.has(key)) {
    draw(verdicts.get(key));
  } else {
    explain(pool, labels).then((verdict) => {
      verdicts.set(key, verdict);
      draw(verdict);
    });
  }
  return el("tr", {class: "dropped-target"},
    el("td", {}, el("details", {}, el("summary", {}, labels.__address__ || "(no address)"),
      labelChips(labels))), cell);
}

async function explain(pool, labels) {
  const answer = await api(`api/v1/targets/relabel_steps?scrapePool=${encodeURIComponent(pool)}` +
    `&labels=${encodeURIComponent(JSON.stringify(labels))}`);
  if (!answer.ok) {
    return el("span", {class: "muted"}, answer.status === 404
      ? "unknown: the relabel steps API is not available in this agent" : answer.error);
  }
  const steps = answer.data.steps;
  const at = droppingRule(steps);
  if (at < 0) return el("span", {}, "no rule: relabeling left no label");
  return el("span", {class: "rule-ref"}, el("b", {}, `rule ${at + 1}`), " ",
    el("code", {}, ruleText(steps[at].rule)));
}
