// Models: the catalog as cards (name, description, sizes with their local state, engines, quantizations, link),
// pull with live total and per-file progress bars, speed and ETA (from pull.progress events), and cancel.

import { get, post, readLines, request } from "../api.js";
import { on } from "../events.js";
import { formatBytes, h, notice, show } from "../dom.js";

export const title = "Models";

export function mount(container) {
  const message = h("div");
  const cards = h("div", { class: "cards", id: "catalog" });
  const pulls = new Map();
  const form = h("form", { class: "inline", id: "pull-form" },
    h("label", {}, "Model", h("input", { name: "model", required: true, placeholder: "catalog ref or owner/name" })),
    h("label", {}, "Source", h("select", { name: "source" },
      h("option", { value: "" }, "default"), h("option", { value: "huggingface" }, "huggingface"),
      h("option", { value: "modelscope" }, "modelscope"))),
    h("label", {}, "Revision", h("input", { name: "revision", placeholder: "main", size: 10 })),
    h("button", { type: "submit", class: "primary" }, "Pull"));
  const progress = h("section", { id: "pulls" });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    pull(values.model.trim(), values.source || undefined, values.revision.trim() || undefined);
  });

  async function pull(model, source, revision) {
    show(message, notice(`Pulling ${model}…`));
    try {
      const response = await request("/api/v1/models/pull", { method: "POST", body: { model, source, revision }, raw: true });
      await readLines(response, (line) => { if (line) update(JSON.parse(line)); });
    } catch (error) {
      show(message, notice(`The pull failed: ${error.message}`, true));
    }
  }

  const eta = (seconds) => (seconds === null || seconds === undefined ? "–" : seconds < 60 ? `${Math.ceil(seconds)} s` : `${Math.ceil(seconds / 60)} min`);
  const bar = (label, done, total) => h("div", {},
    h("div", { class: "hint" }, `${label}: ${formatBytes(done)} of ${formatBytes(total)}`),
    h("progress", { max: Math.max(total, 1), value: Math.min(done, total), "aria-label": label }));

  function update(event) {
    pulls.set(event.job_id, event);
    const final = ["ready", "failed", "cancelled"].includes(event.state);
    show(progress, h("h2", {}, "Pulls"), [...pulls.values()].map((job) => h("div", { class: "card", "data-job": job.job_id },
      h("h3", {}, `${job.repo} (${job.source}, ${job.revision})`),
      h("p", { "data-state": job.state, class: `state-${job.state}` },
        `${job.state} · ${job.files_done}/${job.files_total} files · ${formatBytes(job.bytes_per_second ?? 0)}/s · ETA ${eta(job.eta_seconds)}`),
      bar("Total", job.completed_bytes, job.total_bytes),
      (job.active_files ?? []).map((file) => bar(file.path, file.completed_bytes, file.total_bytes)),
      job.error ? h("p", { class: "error" }, job.error.message) : null,
      ["ready", "failed", "cancelled"].includes(job.state) ? null
        : h("button", { type: "button", class: "danger", onclick: () => post(`/api/v1/models/pulls/${encodeURIComponent(job.job_id)}/cancel`).catch((error) => show(message, notice(error.message, true))) }, "Cancel"))));
    if (final) load();
  }

  async function load() {
    try {
      const catalog = await get("/api/v1/models");
      show(cards, catalog.map((model) => h("article", { class: "card", "data-model": model.id },
        h("h3", {}, model.name),
        h("p", {}, model.description),
        h("p", { class: "hint" }, `Engines: ${model.engines.join(", ")} · quantizations: ${model.quantizations.join(", ") || "–"}`),
        h("ul", {}, model.sizes.map((size) => h("li", {},
          `${size.ref}: `, h("span", { class: `state-${size.state}` }, size.state.replace("_", " ")), " ",
          size.state === "ready" ? null : h("button", { type: "button", onclick: () => pull(size.ref) }, "Pull")))),
        model.official_url ? h("a", { href: model.official_url, rel: "noopener noreferrer", target: "_blank" }, "Official page") : null)));
    } catch (error) {
      show(message, notice(`Could not read the catalog: ${error.message}`, true));
    }
  }

  show(container, h("h2", {}, "Models"), message, form, progress, cards);
  load();
  const stops = [
    on("pull.progress", update), on("pull.done", update), on("pull.failed", update),
    on("version.added", load), on("version.removed", load), on("reload", load),
  ];
  return () => stops.forEach((stop) => stop());
}
