// Playground: a streamed chat with a ready run or a model ref (started on demand), with a system prompt, sampling
// settings, a stop button, and per reply the time to first token, tokens per second and usage. Model text is
// inserted as text (fenced code blocks as <pre> text), never as HTML. A chat may be kept as a session
// (/api/v1/sessions): the daemon stores it, and the list of sessions resumes one, its messages shown.

import { get, post, readLines, request } from "../api.js";
import { formatTime, h, notice, show } from "../dom.js";

export const title = "Playground";

/** A reply's text as nodes: fenced code blocks as <pre>, the rest as text. */
function formatted(text) {
  return text.split(/```[^\n]*\n?/).map((part, index) => (index % 2 ? h("pre", {}, h("code", {}, part)) : document.createTextNode(part)));
}

/** A stored message as the transcript shows it; a reply cut off is marked so. */
function shownMessage({ role, content, partial }) {
  if (role === "user") return h("div", { class: "msg user" }, content);
  return h("div", { class: "msg assistant", "data-state": partial ? "partial" : "done" }, ...formatted(content));
}

export function mount(container) {
  const messages = [];
  /** The session being continued (its id), or null for a chat kept in the page only. */
  let session = null;
  const transcript = h("div", { class: "chat", id: "chat", "aria-live": "polite" });
  const message = h("div");
  const models = h("datalist", { id: "chat-models" });
  const sessionList = h("ul", { id: "session-list", class: "sessions" });
  const sessionName = h("p", { class: "hint", id: "chat-session" });
  const input = (label, name, attributes) => h("label", {}, label, h("input", { name, ...attributes }));
  const form = h("form", { class: "inline", id: "chat-form" },
    input("Model or run", "model", { required: true, list: "chat-models", placeholder: "run name or model ref" }),
    input("Temperature", "temperature", { type: "number", step: "0.1", min: 0, max: 2, value: "0.7", size: 5 }),
    input("top_p", "top_p", { type: "number", step: "0.05", min: 0, max: 1, value: "1", size: 5 }),
    input("Max tokens", "max_tokens", { type: "number", min: 1, value: "256", size: 6 }),
    h("label", { title: "vLLM, SGLang and the built-in engine: generate max tokens whatever the model says" },
      "Ignore EOS", h("input", { name: "ignore_eos", type: "checkbox" })),
    h("label", { title: "The daemon stores the conversation; resume it later from the list" },
      "Keep as a session", h("input", { name: "keep", type: "checkbox" })),
    h("label", {}, "System prompt", h("textarea", { name: "system", rows: 2, cols: 40 })),
    h("label", {}, "Message", h("textarea", { name: "prompt", rows: 3, cols: 40, required: true })),
    h("button", { type: "submit", class: "primary", id: "chat-send" }, "Send"),
    h("button", { type: "button", id: "chat-stop", disabled: true }, "Stop"),
    h("button", { type: "button", id: "chat-new" }, "New chat"));
  const stopButton = form.querySelector("#chat-stop");
  let controller = null;
  stopButton.addEventListener("click", () => {
    // A session's reply is stopped by the daemon (and kept as partial); a plain chat's request is dropped.
    if (session) post(`/api/v1/sessions/${encodeURIComponent(session)}/stop`).catch(() => controller?.abort());
    else controller?.abort();
  });

  /** Shows which session the chat continues; the page's own chat when none. */
  function useSession(info) {
    session = info?.id ?? null;
    form.elements.keep.checked = session !== null;
    form.elements.keep.disabled = session !== null;
    sessionName.textContent = info ? `Session ${info.name ?? info.id} with ${info.model}` : "";
    for (const item of sessionList.children) item.classList.toggle("current", item.dataset.id === session);
  }

  async function listSessions() {
    try {
      const page = await get("/api/v1/sessions?limit=50");
      show(sessionList, page.sessions.map((info) => h("li", { "data-id": info.id, class: info.id === session ? "current" : "" },
        h("button", { type: "button", class: "link", "data-resume": info.id }, info.name ?? info.id),
        h("span", { class: "hint" }, ` ${info.model} · ${info.message_count} messages · ${formatTime(info.updated_at)}`))));
      if (!page.sessions.length) show(sessionList, h("li", { class: "hint" }, "No sessions yet: tick “Keep as a session”."));
    } catch (error) {
      show(message, notice(`Could not read the sessions: ${error.message}`, true));
    }
  }

  async function resume(id) {
    try {
      const info = await get(`/api/v1/sessions/${encodeURIComponent(id)}`);
      useSession(info);
      form.elements.model.value = info.model;
      form.elements.system.value = info.system ?? "";
      messages.length = 0;
      show(transcript, ...info.messages.map(shownMessage));
    } catch (error) {
      show(message, notice(`Could not open the session: ${error.message}`, true));
    }
  }

  sessionList.addEventListener("click", (event) => {
    const id = event.target.closest("[data-resume]")?.dataset.resume;
    if (id && !controller) resume(id);
  });
  form.querySelector("#chat-new").addEventListener("click", () => {
    if (controller) return;
    useSession(null);
    messages.length = 0;
    transcript.replaceChildren();
  });

  /** Streams a reply in the session (made first when the chat is to be kept); what it came to. */
  async function sessionReply(values, sampling, onDelta) {
    if (!session) {
      const info = await post("/api/v1/sessions", {
        model: values.model.trim(), options: sampling, ...(values.system.trim() ? { system: values.system } : {}),
      });
      useSession(info);
    }
    const response = await request(`/api/v1/sessions/${encodeURIComponent(session)}/messages`, {
      method: "POST", body: { content: values.prompt, stream: true, ...sampling }, raw: true, signal: controller.signal,
    });
    let done = null;
    await readLines(response, (line) => {
      if (!line) return;
      const event = JSON.parse(line);
      if (event.delta) onDelta(event.delta);
      if (event.done) done = event;
    });
    listSessions();
    return { usage: done?.usage, dropped: done?.dropped ?? 0, partial: done?.message?.partial ?? true, error: done?.error };
  }

  /** Streams a reply from the OpenAI chat endpoint, the conversation kept in the page. */
  async function plainReply(values, sampling, onDelta) {
    const body = {
      model: values.model.trim(), stream: true, stream_options: { include_usage: true },
      messages: [...(values.system.trim() ? [{ role: "system", content: values.system }] : []), ...messages], ...sampling,
    };
    const response = await request("/v1/chat/completions", { method: "POST", body, raw: true, signal: controller.signal });
    let usage = null;
    await readLines(response, (line) => {
      if (!line.startsWith("data:")) return;
      const data = line.slice(5).trim();
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) onDelta(delta);
    });
    return { usage, dropped: 0, partial: false };
  }

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
    let first = null, text = "", chunks = 0, outcome = {};
    const sampling = { temperature: Number(values.temperature), top_p: Number(values.top_p), max_tokens: Number(values.max_tokens) };
    if (values.ignore_eos) sampling.ignore_eos = true;
    const onDelta = (delta) => {
      first ??= performance.now();
      chunks += 1;
      text += delta;
      reply.dataset.state = "streaming";
      reply.replaceChildren(...formatted(text));
    };
    try {
      outcome = await (session || values.keep ? sessionReply : plainReply)(values, sampling, onDelta);
      reply.dataset.state = outcome.partial ? "stopped" : "done";
    } catch (error) {
      reply.dataset.state = controller.signal.aborted ? "stopped" : "failed";
      if (!controller.signal.aborted) show(message, notice(`The chat failed: ${error.message}`, true));
    }
    if (!text) reply.textContent = "";
    messages.push({ role: "assistant", content: text });
    const seconds = first === null ? 0 : (performance.now() - first) / 1000;
    const usage = outcome.usage;
    const tokens = usage?.completion_tokens ?? chunks;
    stats.textContent = [
      first === null ? "no tokens" : `first token ${Math.round(first - started)} ms`,
      seconds > 0 ? `${(tokens / seconds).toFixed(1)} tokens/s` : null,
      usage ? `usage ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion` : null,
      outcome.dropped ? `${outcome.dropped} earlier messages left out to fit the context` : null,
      reply.dataset.state === "stopped" && session ? "kept as partial" : null,
    ].filter(Boolean).join(" · ");
    stopButton.disabled = true;
    controller = null;
  });

  show(container, h("h2", {}, "Playground"), message,
    h("section", { id: "sessions" }, h("h3", {}, "Sessions"), sessionList), models, sessionName, form, transcript);
  get("/api/v1/models/running").then((runs) => {
    show(models, runs.filter((run) => run.state === "ready").map((run) => h("option", { value: run.name })));
    if (runs.length && !form.elements.model.value) form.elements.model.value = runs.find((run) => run.state === "ready")?.name ?? "";
  }).catch((error) => show(message, notice(`Could not read the runs: ${error.message}`, true)));
  listSessions();
  return () => controller?.abort();
}
