// Config & status: build information, command-line flags and the running configuration
// (secrets redacted by the agent before it leaves the process).

import {api, el, notice} from "./util.js";

function table(id, rows) {
  return el("table", {class: "kv", id}, el("tbody", {}, rows.map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", {}, v)))));
}

export function mount(root) {
  const build = el("div", {}, el("p", {class: "muted"}, "loading…"));
  const flags = el("div", {}, el("p", {class: "muted"}, "loading…"));
  const config = el("pre", {id: "config-yaml"}, "loading…");
  const copy = el("button", {class: "small", onclick: () => navigator.clipboard?.writeText(config.textContent)}, "copy");
  root.append(el("h1", {}, "Config & status"),
    el("div", {class: "columns"},
      el("section", {class: "card"}, el("h2", {}, "Build"), build),
      el("section", {class: "card"}, el("h2", {}, "Flags"), flags)),
    el("section", {class: "card"}, el("div", {class: "detail-head"},
      el("h2", {}, "Configuration"), el("span", {class: "muted"}, "secrets shown as <secret>"), copy),
    config));

  return {
    async refresh() {
      const [info, flagData, yaml] = await Promise.all([
        api("api/v1/status/buildinfo"), api("api/v1/status/flags"), api("api/v1/status/config")]);
      build.replaceChildren(info.ok ? table("build-info", [
        ["version", info.data.version],
        ["python", info.data.python],
        ["event loop", info.data.eventLoop],
        ["platform", info.data.platform],
        ["pid", String(info.data.pid)],
        ["started", new Date(info.data.startTime * 1000).toLocaleString()],
      ]) : notice("warn", info.error));
      flags.replaceChildren(flagData.ok
        ? table("flags", Object.entries(flagData.data).map(([k, v]) => [`--${k}`, el("code", {}, v)]))
        : notice("warn", flagData.error));
      config.textContent = yaml.ok ? yaml.data.yaml : yaml.error;
    },
  };
}
