// Playground: a streamed chat with a ready run or a model ref (started on demand), with a system prompt, sampling
// settings, a stop button, and per reply the time to first token, tokens per second and usage. Model text is
// inserted as text (fenced code blocks as <pre> text), never as HTML.

import { get, readLines, request } from "../api.js";
import { h, notice, show } from "../dom.js";

export const title = "Playground";

/** A reply's text as nodes: fenced code blocks as <pre>, the rest as text. */
function formatted(text) {
  return text.split(/```[^\n]*\n?/).map((part, index) => (index % 2 ? h("pre", {}, h("code", {}, part)) : document.createTextNode(part)));
}

export function mount(container) {
  const messages = [];
  const transcript = h("div", { class: "chat", id: "chat", "aria-live": "polite" });
  const message = h("div");
  const models = h("datalist", { id: "chat-models" });
  const input = (label, name, attributes) => h("label", {}, label, h("input", { name, ...attributes }));
  const form = h("form", { class: "inline", id: "chat-form" },
    input("Model or run", "model", { required: true, list: "chat-models", placeholder: "run name or model ref" }),
    input("Temperature", "temperature", { type: "number", step: "0.1", min: 0, max: 2, value: "0.7", size: 5 }),
    input("top_p", "top_p", { type: "number", step: "0.05", min: 0, max: 1, value: "1", size: 5 }),
    input("Max tokens", "max_tokens", { type: "number", min: 1, value: "256", size: 6 }),
    h("label", { title: "vLLM, SGLang and the built-in engine: generate max tokens whatever the model says" },
      "Ignore EOS", h("input", { name: "ignore_eos", type: "checkbox" })),
    h("label", {}, "System prompt", h("textarea", { name: "system", rows: 2, cols: 40 })),
    h("label", {}, "Message", h("textarea", { name: "prompt", rows: 3, cols: 40, required: true })),
    h("button", { type: "submit", class: "primary", id: "chat-send" }, "Send"),
    h("button", { type: "button", id: "chat-stop", disabled: true }, "Stop"));
  const stopButton = form.querySelector("#chat-stop");
  let controller = null;
  stopButton.addEventListener("click", () => controller?.abort());

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    messages.push({ role: "user", content: values.prompt });
    transcript.append(h("div", { class: "msg user" }, values.prompt));
    form.elements.prompt.value = "";
    const reply = h("div", { class: "msg assistant", "data-state": "loading" }, "loading…");
    const stats = h("p", { class: "hint" });
    transcript.append(reply, stats);
    controller = new AbortController();
    stopButton.disabled = false;
    const started = performance.now();
    let first = null, text = "", usage = null, chunks = 0;
    try {
      const body = {
        model: values.model.trim(), stream: true, stream_options: { include_usage: true },
        messages: [...(values.system.trim() ? [{ role: "system", content: values.system }] : []), ...messages],
        temperature: Number(values.temperature), top_p: Number(values.top_p), max_tokens: Number(values.max_tokens),
      };
      if (values.ignore_eos) body.ignore_eos = true;
      const response = await request("/v1/chat/completions", { method: "POST", body, raw: true, signal: controller.signal });
      await readLines(response, (line) => {
        if (!line.startsWith("data:")) return;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices?.[0]?.delta?.content;
        if (!delta) return;
        first ??= performance.now();
        chunks += 1;
        text += delta;
        reply.dataset.state = "streaming";
        reply.replaceChildren(...formatted(text));
      });
      reply.dataset.state = "done";
    } catch (error) {
      reply.dataset.state = controller.signal.aborted ? "stopped" : "failed";
      if (!controller.signal.aborted) show(message, notice(`The chat failed: ${error.message}`, true));
    }
    if (!text) reply.textContent = "";
    messages.push({ role: "assistant", content: text });
    const seconds = first === null ? 0 : (performance.now() - first) / 1000;
    const tokens = usage?.completion_tokens ?? chunks;
    stats.textContent = [
      first === null ? "no tokens" : `first token ${Math.round(first - started)} ms`,
      seconds > 0 ? `${(tokens / seconds).toFixed(1)} tokens/s` : null,
      usage ? `usage ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion` : null,
    ].filter(Boolean).join(" · ");
    stopButton.disabled = true;
  });

  show(container, h("h2", {}, "Playground"), message, models, form, transcript);
  get("/api/v1/models/running").then((runs) => {
    show(models, runs.filter((run) => run.state === "ready").map((run) => h("option", { value: run.name })));
    if (runs.length && !form.elements.model.value) form.elements.model.value = runs.find((run) => run.state === "ready")?.name ?? "";
  }).catch((error) => show(message, notice(`Could not read the runs: ${error.message}`, true)));
  return () => controller?.abort();
}
