// Status: the daemon's version, its runs by state, the disk its local versions use, and the tokens it served.

import { get } from "../api.js";
import { on } from "../events.js";
import { formatBytes, h, notice, show } from "../dom.js";

export const title = "Status";

/** Sums `modeld_tokens_total` over its labels, by kind, from the Prometheus text of /metrics. */
function tokensServed(text) {
  const totals = {};
  for (const line of text.split("\n")) {
    const match = /^modeld_tokens_total\{([^}]*)\}\s+([0-9.eE+]+)/.exec(line);
    if (!match) continue;
    const kind = /kind="([^"]*)"/.exec(match[1])?.[1] ?? "all";
    totals[kind] = (totals[kind] ?? 0) + Number(match[2]);
  }
  return totals;
}

export function mount(container) {
  const stats = h("div", { class: "cards" });
  const message = h("div");
  show(container, h("h2", {}, "Status"), message, stats);

  const card = (label, value, detail, id) =>
    h("div", { class: "card", id }, h("h3", {}, label), h("div", { class: "stat" }, value), detail ? h("div", { class: "hint" }, detail) : null);

  async function refresh() {
    try {
      const [health, runs, versions, metrics] = await Promise.all([
        get("/health"), get("/api/v1/models/running"), get("/api/v1/models/local"),
        get("/metrics", { raw: true }).then((response) => response.text()),
      ]);
      const byState = {};
      for (const run of runs) byState[run.state] = (byState[run.state] ?? 0) + 1;
      const ready = versions.filter((version) => version.state === "ready");
      const tokens = tokensServed(metrics);
      show(message);
      show(stats,
        card("Version", health.version, `status ${health.status}`, "status-version"),
        card("Runs", String(runs.length),
          Object.entries(byState).map(([state, count]) => `${count} ${state}`).join(", ") || "none", "status-runs"),
        card("Local versions", String(ready.length),
          `${formatBytes(ready.reduce((sum, version) => sum + version.size_bytes, 0))} on disk`, "status-disk"),
        card("Tokens served", String((tokens.prompt ?? 0) + (tokens.completion ?? 0)),
          `${tokens.prompt ?? 0} prompt, ${tokens.completion ?? 0} completion`, "status-tokens"));
    } catch (error) {
      show(message, notice(`Could not read the status: ${error.message}`, true));
    }
  }

  refresh();
  const stops = ["run.changed", "run.removed", "version.added", "version.removed", "reload"].map((type) => on(type, refresh));
  return () => stops.forEach((stop) => stop());
}
