// The UI's entry point: a hash router over five pages, and the auto-refresh timer.
// Each page module exports `mount(root)` returning `{refresh()}`; refresh() reloads the
// page's data and redraws it while keeping what the user opened, typed or collapsed.

import * as discovery from "./discovery.js";
import * as relabel from "./relabel.js";
import * as remote from "./remote.js";
import * as status from "./status.js";
import * as targets from "./targets.js";

const PAGES = {
  "targets": {module: targets, title: "Targets", live: true},
  "discovery": {module: discovery, title: "Service discovery", live: true},
  "remote-write": {module: remote, title: "Remote write", live: true},
  "relabel": {module: relabel, title: "Relabel playground", live: false},
  "status": {module: status, title: "Config & status", live: false},
};
const REFRESH_MS = 5000;

let current = null;
let timer = null;

function pageName() {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0];
  return name in PAGES ? name : "targets";
}

async function refresh() {
  if (!current) return;
  const mine = current;
  try {
    await mine.view.refresh();
    if (mine === current) {
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
  } catch (err) {
    document.getElementById("updated").textContent = `error: ${err.message}`;
  }
  if (mine === current) document.body.dataset.loaded = mine.name;
}

function schedule() {
  clearInterval(timer);
  timer = null;
  const auto = document.getElementById("auto-refresh").checked;
  if (current && PAGES[current.name].live && auto) timer = setInterval(refresh, REFRESH_MS);
}

function show() {
  const name = pageName();
  const page = PAGES[name];
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  document.title = `${page.title} · collector`;
  const root = document.getElementById("page");
  root.replaceChildren();
  root.dataset.page = name;
  delete document.body.dataset.loaded;
  current = {name, view: page.module.mount(root)};
  schedule();
  refresh();
}

window.addEventListener("hashchange", show);
document.getElementById("auto-refresh").addEventListener("change", schedule);
show();
