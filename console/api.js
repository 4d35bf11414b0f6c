// The daemon's API: JSON requests with the key of this tab (sessionStorage, sent as `Authorization: Bearer`, never a
// cookie or a URL). A 401 asks for a key in the key dialog and sends the request again with it.

const storageKey = "modeld.apiKey";
let pendingKey = null;

export function currentKey() { return sessionStorage.getItem(storageKey); }

export function useKey(key) { sessionStorage.setItem(storageKey, key); }

/** An error the API answered, with its status and message. */
export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Asks for a key (one dialog however many requests wait for it); resolves once one is entered. */
function askForKey(reason) {
  if (pendingKey) return pendingKey;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  document.getElementById("key-reason").textContent = reason;
  input.value = "";
  pendingKey = new Promise((resolve) => {
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      useKey(key);
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      pendingKey = null;
      resolve(key);
    };
    // The dialog stays until a key is given: nothing works without one.
    const onCancel = (event) => event.preventDefault();
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
  });
  dialog.showModal();
  input.focus();
  return pendingKey;
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return new APIError(response.status, body.msg ?? body.error?.message ?? text);
  } catch {
    return new APIError(response.status, text || response.statusText);
  }
}

/**
 * Sends a request; resolves to the `data` of the envelope (or the whole JSON body outside it). `raw` resolves to
 * the successful Response itself, for streams. Throws APIError for any other status.
 */
export async function request(path, { method = "GET", body, headers = {}, signal, raw = false } = {}) {
  for (;;) {
    const sent = { ...headers };
    const key = currentKey();
    if (key) sent.Authorization = `Bearer ${key}`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers: sent, signal, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      const error = await errorOf(response);
      await askForKey(key ? `The key was refused: ${error.message}` : "This daemon needs an API key (an admin key for the console).");
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    if (raw) return response;
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    return json && typeof json === "object" && "data" in json && "request_id" in json ? json.data : json;
  }
}

export const get = (path, options) => request(path, options);
export const post = (path, body, options = {}) => request(path, { ...options, method: "POST", body: body ?? {} });

/** Reads a streamed text response line by line, calling `onLine` for each, until it ends or `signal` aborts. */
export async function readLines(response, onLine) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, end).replace(/\r$/, ""));
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer) onLine(buffer);
}
