// Runs: a live table of the daemon's runs (kept current by run.changed and run.removed events, also while the list
// loads), a start form (optional fields are sent only when filled) that shows the engine's own error when a start
// fails, stop, and a log view that follows new lines.

import { get, post, readLines, request } from "../api.js";
import { on } from "../events.js";
import { formatTime, h, notice, show, stateCell, table } from "../dom.js";

export const title = "Runs";

export function mount(container) {
  const runs = new Map();
  const message = h("div");
  const list = h("div", { id: "runs-table" });
  const logs = h("section", { id: "run-logs" });
  let logStream = null;

  const field = (label, name, attributes = {}) => h("label", {}, label, h("input", { name, ...attributes }));
  const form = h("form", { class: "inline", id: "start-form" },
    field("Model", "model", { required: true, placeholder: "qwen3:0.6b or owner/name" }),
    h("label", {}, "Engine", h("select", { name: "engine" },
      h("option", { value: "" }, "default"), ["builtin", "vllm", "sglang", "ollama"].map((engine) => h("option", { value: engine }, engine)))),
    field("Name", "name", { placeholder: "optional" }),
    field("Keep alive", "keep_alive", { placeholder: "e.g. 10m", size: 8 }),
    field("GPUs", "gpus", { placeholder: "0,1", size: 6 }),
    field("Tensor parallel", "tensor_parallel", { type: "number", min: 1, step: 1, size: 4 }),
    field("Memory fraction", "memory_fraction", { type: "number", min: 0.01, max: 1, step: 0.01, size: 5, placeholder: "0.9" }),
    field("Max context", "max_context", { type: "number", min: 1, size: 8 }),
    field("Engine args", "engine_args", { placeholder: "space-separated" }),
    h("button", { type: "submit", class: "primary" }, "Start"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    const body = { model: values.model.trim() };
    for (const name of ["engine", "name", "keep_alive", "gpus"]) if (values[name].trim()) body[name] = values[name].trim();
    for (const name of ["tensor_parallel", "memory_fraction", "max_context"]) if (values[name]) body[name] = Number(values[name]);
    if (values.engine_args.trim()) body.engine_args = values.engine_args.trim().split(/\s+/);
    show(message, notice(`Starting ${body.model}…`));
    try {
      const run = await post("/api/v1/models/start", body);
      upsert(run);
      show(message, notice(`Started ${run.name}: ${run.state}.`));
    } catch (error) {
      show(message, notice(`The start failed: ${error.message}`, true));
    }
  });

  function render() {
    const rows = [...runs.values()].sort((a, b) => a.name.localeCompare(b.name)).map((run) => ({
      key: run.run_id,
      item: run,
      cells: [
        h("span", { class: "mono" }, run.run_id), run.name, run.model, run.engine, stateCell(run.state),
        run.pid ?? "–", run.port ?? "–", String(run.restarts), run.reason ?? "",
        run.keep_alive ? `${run.keep_alive}s idle (last use ${formatTime(run.last_used_at)})` : "until stopped",
        {
          className: "actions",
          node: h("span", {},
            h("button", { type: "button", onclick: () => follow(run) }, "Logs"), " ",
            h("button", {
              type: "button", class: "danger", disabled: run.desired_state === "stopped" || run.state === "stopped",
              onclick: () => stop(run), "aria-label": `Stop ${run.name}`,
            }, "Stop")),
        },
      ],
    }));
    show(list, rows.length
      ? table(["Run", "Name", "Model", "Engine", "State", "PID", "Port", "Restarts", "Reason", "Unload", ""], rows,
        (run) => ({ "data-name": run.name }))
      : h("p", { class: "muted" }, "No runs."));
  }

  // Events that arrive while the list loads, applied again on top of it: the list may be older than they are.
  let arrived = null;

  function upsert(run) { runs.set(run.run_id, run); render(); }

  function changed(run) {
    arrived?.push(() => runs.set(run.run_id, run));
    upsert(run);
  }

  function removed(run) {
    arrived?.push(() => runs.delete(run.run_id));
    runs.delete(run.run_id);
    render();
  }

  async function stop(run) {
    try {
      upsert(await post(`/api/v1/models/running/${encodeURIComponent(run.run_id)}/stop`));
    } catch (error) {
      show(message, notice(`Could not stop ${run.name}: ${error.message}`, true));
    }
  }

  async function follow(run) {
    logStream?.abort();
    const controller = new AbortController();
    logStream = controller;
    const output = h("pre", { class: "log", id: "log-output", tabindex: "0", "aria-live": "off" });
    show(logs, h("h2", {}, `Log of ${run.name}`),
      h("button", { type: "button", onclick: () => { controller.abort(); show(logs); } }, "Close"), output);
    try {
      const response = await request(`/api/v1/models/running/${encodeURIComponent(run.run_id)}/logs?follow=true&tail=200`,
        { raw: true, signal: controller.signal });
      await readLines(response, (line) => {
        const atEnd = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
        output.append(line + "\n");
        if (atEnd) output.scrollTop = output.scrollHeight;
      });
      output.append("— the log ended —\n");
    } catch (error) {
      if (!controller.signal.aborted) output.append(`— ${error.message} —\n`);
    }
  }

  async function load() {
    const meanwhile = arrived = [];
    try {
      const list = await get("/api/v1/models/running");
      runs.clear();
      for (const run of list) runs.set(run.run_id, run);
      for (const apply of meanwhile) apply();
      render();
    } catch (error) {
      show(message, notice(`Could not read the runs: ${error.message}`, true));
    } finally {
      if (arrived === meanwhile) arrived = null;
    }
  }

  show(container, h("h2", {}, "Runs"), message, list, h("h2", {}, "Start a run"), form, logs);
  load();
  const stops = [
    on("run.changed", changed),
    on("run.removed", removed),
    on("reload", load),
  ];
  return () => { stops.forEach((stop) => stop()); logStream?.abort(); };
}
