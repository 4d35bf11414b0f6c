// The daemon's live events (`GET /api/v1/events`), read with fetch and a stream reader so that the key goes in the
// Authorization header (EventSource cannot send it). Reconnects with Last-Event-ID; a `reload` event (events were
// missed) tells every view to read its state again.

import { readLines, request } from "./api.js";

const listeners = new Map();
let lastEventID = null;
let retry = 2000;

/** Calls `listener(data, type)` for each event of `type` ("*" for all); returns the function that stops it. */
export function on(type, listener) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(listener);
  return () => listeners.get(type).delete(listener);
}

function dispatch(type, data) {
  for (const key of [type, "*"]) {
    for (const listener of listeners.get(key) ?? []) {
      try { listener(data, type); } catch (error) { console.warn("event listener failed", error); }
    }
  }
}

function setLive(live) {
  const badge = document.getElementById("live");
  badge.textContent = live ? "live" : "reconnecting";
  badge.classList.toggle("on", live);
}

// The open stream's controller. A page left for another (kept in the back/forward cache) closes its stream and
// opens it again when shown: browsers allow six connections per host, and streams of hidden pages would hold them.
let current = null;
let hidden = false;
addEventListener("pagehide", () => { hidden = true; current?.abort(); });
addEventListener("pageshow", (event) => {
  hidden = false;
  if (event.persisted) connect();
});

/** Connects, and connects again whenever the stream ends, for as long as the page is shown. */
export async function connect() {
  let connectedBefore = false;
  while (!hidden) {
    const controller = new AbortController();
    current = controller;
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastEventID) headers["Last-Event-ID"] = lastEventID;
      const response = await request("/api/v1/events", { headers, raw: true, signal: controller.signal });
      setLive(true);
      // Without an id to resume from, what happened while disconnected is unknown: read everything again.
      if (connectedBefore && !lastEventID) dispatch("reload", { reason: "reconnected" });
      connectedBefore = true;
      let event = { type: "message", data: [], id: null };
      await readLines(response, (line) => {
        if (line === "") {
          if (event.id !== null) lastEventID = event.id;
          if (event.data.length) {
            let data = event.data.join("\n");
            try { data = JSON.parse(data); } catch { /* not JSON: passed on as text */ }
            dispatch(event.type, data);
          }
          event = { type: "message", data: [], id: null };
          return;
        }
        if (line.startsWith(":")) return;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.type = value;
        else if (field === "data") event.data.push(value);
        else if (field === "id") event.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
      });
    } catch (error) {
      if (hidden) return;
      console.warn("event stream:", error.message);
    }
    if (hidden) return;
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}
