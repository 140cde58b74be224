// Relabel steps, drawn the same way everywhere (a target's steps, a dropped target's rule,
// the playground), and the relabel playground page itself.
//
// The playground POSTs labels and rules to api/v1/relabel_steps, which runs them with the
// agent's own relabel code (collector.model.relabel_steps, the code behind
// api/v1/targets/relabel_steps) and answers in that API's JSON shape.

import {el, labelChips, notice, postJSON} from "./util.js";

const RULE_FIELDS = ["action", "source_labels", "separator", "regex", "modulus", "replacement",
  "target_label"];
const DEFAULTS = {separator: ";", regex: "(.*)", replacement: "$1"};

// One line per rule: the fields that differ from the defaults (action always).
export function ruleText(rule) {
  const parts = [];
  for (const field of RULE_FIELDS) {
    const value = rule[field];
    if (value === undefined || value === "" || (field !== "action" && DEFAULTS[field] === value)) {
      continue;
    }
    parts.push(field === "action" ? value
      : `${field}: ${Array.isArray(value) ? `[${value.join(", ")}]` : JSON.stringify(value)}`);
  }
  return parts.join("  ");
}

function diff(before, after) {
  const marks = {};
  for (const [name, value] of Object.entries(after)) {
    if (!(name in before)) marks[name] = "added";
    else if (before[name] !== value) marks[name] = "changed";
  }
  const removed = Object.keys(before).filter((name) => !(name in after)).sort();
  return {marks, removed};
}

// The index of the rule that dropped the label set, or -1.
export function droppingRule(steps) {
  return steps.findIndex((step) => !step.keep);
}

// `input` then one row per step: the rule and the labels after it, changes marked.
export function renderSteps(input, steps) {
  const rows = [el("tr", {class: "input"},
    el("th", {}, "input"), el("td", {}), el("td", {}, labelChips(input)))];
  let before = input;
  const dropAt = droppingRule(steps);
  steps.forEach((step, i) => {
    let result;
    if (dropAt >= 0 && i > dropAt) {
      result = el("span", {class: "muted"}, "not evaluated");
    } else if (!step.keep) {
      result = el("span", {class: "dropped"}, "dropped by this rule");
    } else {
      const {marks, removed} = diff(before, step.output);
      result = [labelChips(step.output, marks),
        removed.length ? el("div", {class: "removed"}, `removed: ${removed.join(", ")}`) : null];
      before = step.output;
    }
    rows.push(el("tr", {class: step.keep ? "step" : "step drop", "data-step": i},
      el("th", {}, `rule ${i + 1}`), el("td", {class: "rule"}, el("code", {}, ruleText(step.rule))),
      el("td", {}, result)));
  });
  return el("table", {class: "steps"}, el("tbody", {}, rows));
}

const EXAMPLE_LABELS = `{
  "__address__": "10.1.2.3:8080",
  "__meta_kubernetes_namespace": "shop",
  "__meta_kubernetes_pod_name": "cart-7d9f",
  "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
  "job": "kubernetes-pods"
}`;
const EXAMPLE_RULES = `- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
  action: keep
  regex: "true"
- source_labels: [__meta_kubernetes_namespace]
  target_label: namespace
- source_labels: [__meta_kubernetes_pod_name]
  target_label: pod
- action: labeldrop
  regex: __meta_.*`;

export function mount(root) {
  const labels = el("textarea", {id: "pg-labels", rows: 9, spellcheck: "false"}, EXAMPLE_LABELS);
  const rules = el("textarea", {id: "pg-rules", rows: 12, spellcheck: "false"}, EXAMPLE_RULES);
  const output = el("div", {id: "pg-output"});

  async function run() {
    output.replaceChildren(el("p", {class: "muted"}, "running…"));
    const answer = await postJSON("api/v1/relabel_steps", {labels: labels.value, rules: rules.value});
    if (!answer.ok) {
      output.replaceChildren(answer.status === 404
        ? notice("warn", "The relabel playground API is not available in this agent.")
        : notice("error", answer.error));
      return;
    }
    const data = answer.data;
    const verdict = data.kept
      ? el("p", {class: "verdict kept"}, "kept: ", labelChips(data.output))
      : el("p", {class: "verdict dropped"}, data.droppedBy >= 0
        ? `dropped by rule ${data.droppedBy + 1}` : "dropped: no label left after relabeling");
    output.replaceChildren(verdict, renderSteps(data.input, data.steps));
  }

  const runButton = el("button", {id: "pg-run", class: "primary", onclick: run}, "Run rules");
  const keys = (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
  };
  labels.addEventListener("keydown", keys);
  rules.addEventListener("keydown", keys);
  root.append(
    el("h1", {}, "Relabel playground"),
    el("p", {class: "muted"}, "Paste a label set (JSON, name: value lines, or a series such as ",
      el("code", {}, 'up{job="a"}'), ") and relabel rules (YAML, as in relabel_configs), then ",
      "run them (Ctrl+Enter). The agent evaluates them with the code it scrapes with."),
    el("div", {class: "playground"},
      el("section", {class: "card"}, el("h2", {}, "Labels"), labels),
      el("section", {class: "card"}, el("h2", {}, "Rules"), rules)),
    el("div", {class: "actions"}, runButton),
    el("section", {class: "card"}, el("h2", {}, "Steps"), output));
  return {refresh: async () => {}};
}
