// Status: the daemon's version and uptime, its runs by state, its data directory's use and free space, and the tokens
// it served, from GET /api/v1/status.

import { get } from "../api.js";
import { on } from "../events.js";
import { formatBytes, h, notice, show } from "../dom.js";

export const title = "Status";

/** Seconds as people read them ("3 d 4 h", "5 min"). */
function formatDuration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
}

export function mount(container) {
  const stats = h("div", { class: "cards" });
  const message = h("div");
  show(container, h("h2", {}, "Status"), message, stats);

  const card = (label, value, detail, id) =>
    h("div", { class: "card", id }, h("h3", {}, label), h("div", { class: "stat" }, value), detail ? h("div", { class: "hint" }, detail) : null);

  async function refresh() {
    try {
      const status = await get("/api/v1/status");
      const runs = Object.values(status.runs).reduce((sum, count) => sum + count, 0);
      const tokens = status.tokens_served;
      show(message);
      show(stats,
        card("Version", status.version, `up ${formatDuration(status.uptime_seconds)}`, "status-version"),
        card("Runs", String(runs),
          Object.entries(status.runs).filter(([, count]) => count > 0).map(([state, count]) => `${count} ${state}`).join(", ") || "none",
          "status-runs"),
        card("Data directory", formatBytes(status.data_dir_bytes),
          `${status.versions} local version${status.versions === 1 ? "" : "s"} in ${status.data_dir}`, "status-disk"),
        card("Free space", formatBytes(status.free_bytes),
          `of ${formatBytes(status.total_bytes)} on the data directory's file system`, "status-free"),
        card("Tokens served", String(tokens.prompt + tokens.completion),
          `${tokens.prompt} prompt, ${tokens.completion} completion`, "status-tokens"));
    } catch (error) {
      show(message, notice(`Could not read the status: ${error.message}`, true));
    }
  }

  refresh();
  const stops = ["run.changed", "run.removed", "version.added", "version.removed", "reload"].map((type) => on(type, refresh));
  return () => stops.forEach((stop) => stop());
}
