// The console's shell: hash navigation between views, the live-event connection. Each view module exports
// `title` and `mount(container)`, which returns the function that unmounts it (stops its listeners and streams).

import { connect } from "./events.js";
import { notice, show } from "./dom.js";

const views = {
  status: () => import("./views/status.js"),
  runs: () => import("./views/runs.js"),
  versions: () => import("./views/versions.js"),
  models: () => import("./views/models.js"),
  keys: () => import("./views/keys.js"),
  playground: () => import("./views/playground.js"),
};

const container = document.getElementById("view");
let unmount = null;
let navigation = 0;

async function route() {
  const name = location.hash.slice(1) in views ? location.hash.slice(1) : "status";
  const current = ++navigation;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (unmount) { unmount(); unmount = null; }
  const view = await views[name]();
  if (current !== navigation) return;
  document.title = `${view.title} · modeld`;
  container.dataset.view = name;
  show(container);
  try {
    unmount = view.mount(container);
  } catch (error) {
    show(container, notice(`This view failed: ${error.message}`, true));
  }
}

window.addEventListener("hashchange", () => { route(); container.focus(); });
route();
connect();
