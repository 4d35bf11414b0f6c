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

/** The API's error from a status and the body's text (its message, or the text itself). */
function errorFrom(status, text, statusText) {
  try {
    const body = JSON.parse(text);
    return new APIError(status, body.msg ?? body.error?.message ?? text);
  } catch {
    return new APIError(status, text || statusText);
  }
}

/** Asks for a key after a 401, saying whether the key sent was refused or none was sent. */
function askForKeyAfter(error, key) {
  return askForKey(key ? `The key was refused: ${error.message}` : "This daemon needs an API key (an admin key for the console).");
}

async function errorOf(response) {
  return errorFrom(response.status, await response.text(), response.statusText);
}

/** The `data` of an envelope, or the whole JSON body outside one. */
function dataOf(text) {
  const json = text ? JSON.parse(text) : null;
  return json && typeof json === "object" && "data" in json && "request_id" in json ? json.data : json;
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
      await askForKeyAfter(error, key);
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    if (raw) return response;
    return dataOf(await response.text());
  }
}

/** POSTs one XMLHttpRequest with the key in its header; resolves to the finished request, rejects if it fails. */
function send(path, body, key, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : body.size);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new APIError(0, "the upload did not reach the daemon"));
    xhr.onabort = () => reject(new APIError(0, "the upload was cancelled"));
    xhr.send(body);
  });
}

/**
 * Uploads a file as the body of a POST, calling `onProgress(sent, total)` as it goes (fetch reports no upload
 * progress, so this is an XMLHttpRequest). Resolves and throws as `request` does, and asks for a key on a 401.
 */
export async function upload(path, file, onProgress = () => {}) {
  for (;;) {
    const key = currentKey();
    const xhr = await send(path, file, key, onProgress);
    if (xhr.status === 401) {
      const error = errorFrom(xhr.status, xhr.responseText, xhr.statusText);
      await askForKeyAfter(error, key);
      continue;
    }
    if (xhr.status < 200 || xhr.status > 299) throw errorFrom(xhr.status, xhr.responseText, xhr.statusText);
    return dataOf(xhr.responseText);
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
