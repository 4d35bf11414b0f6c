// Keys: the API keys (never their values), create (the value is shown once, with a copy button), revoke.
// Creating the first key closes the open API: the list is then updated from the answer, not read again, so that
// the key prompt does not cover the new key before it is copied (it comes at the next read or reload).

import { currentKey, get, post, useKey } from "../api.js";
import { on } from "../events.js";
import { confirmAction, formatTime, h, notice, show, table } from "../dom.js";

export const title = "Keys";

export function mount(container) {
  const message = h("div", { id: "keys-message" });
  const created = h("div", { id: "key-created" });
  const list = h("div", { id: "keys-table" });
  const form = h("form", { class: "inline", id: "key-create-form" },
    h("label", {}, "Name", h("input", { name: "name", required: true, maxlength: 64 })),
    h("label", {}, "Scope", h("select", { name: "scope" },
      h("option", { value: "admin" }, "admin"), h("option", { value: "inference" }, "inference"))),
    h("label", {}, "Requests per minute", h("input", { name: "rate", type: "number", min: 1, placeholder: "no limit" })),
    h("button", { type: "submit", class: "primary" }, "Create"));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    const body = { name: values.name.trim(), scope: values.scope };
    if (values.rate) body.rate_per_minute = Number(values.rate);
    try {
      const key = await post("/api/v1/keys", body);
      form.reset();
      const value = h("code", { id: "new-key" }, key.key);
      const copy = h("button", {
        type: "button",
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(key.key);
            copy.textContent = "Copied";
          } catch {
            getSelection().selectAllChildren(value);
            copy.textContent = "Selected: press Ctrl+C";
          }
        },
      }, "Copy");
      show(created, h("div", { class: "notice" },
        h("p", {}, `Key ${key.name} (${key.scope}) created. It is shown this once: copy it now.`),
        h("div", { class: "secret" }, value, copy)));
      const use = h("button", { type: "button", onclick: () => { useKey(key.key); use.remove(); } }, "Use in this tab");
      if (!currentKey() && key.scope === "admin") value.parentElement.append(use);
      copy.focus();
      shownID = key.id;
      keys.push({ ...key, key: undefined });
      render();
    } catch (error) {
      show(message, notice(`Could not create the key: ${error.message}`, true));
    }
  });

  async function revoke(key) {
    if (!(await confirmAction(`Revoke key ${key.name} (${key.prefix}…)? Clients using it are refused from now on.`, "Revoke"))) return;
    try {
      await post(`/api/v1/keys/${encodeURIComponent(key.id)}/revoke`);
      show(message, notice(`Revoked ${key.name}.`));
      load();
    } catch (error) {
      show(message, notice(`Could not revoke ${key.name}: ${error.message}`, true));
    }
  }

  let keys = [];
  let shownID = null;

  async function load() {
    try {
      keys = await get("/api/v1/keys");
      render();
    } catch (error) {
      show(message, notice(`Could not read the keys: ${error.message}`, true));
    }
  }

  function render() {
    show(list, keys.length
      ? table(["Name", "Prefix", "Scope", "Rate", "Created", "Last used", "State", ""], keys.map((key) => ({
        key: key.id,
        item: key,
        cells: [
          key.name, h("span", { class: "mono" }, `${key.prefix}…`), key.scope,
          key.rate_per_minute ? `${key.rate_per_minute}/min` : "no limit",
          formatTime(key.created_at), formatTime(key.last_used_at), key.revoked ? "revoked" : "active",
          {
            className: "actions",
            node: key.revoked ? "" : h("button", { type: "button", class: "danger", onclick: () => revoke(key) }, "Revoke"),
          },
        ],
      })), (key) => ({ "data-name": key.name }))
      : h("p", { class: "muted" }, "No keys: the API is open to whoever reaches it. Create an admin key to require one."));
  }

  show(container, h("h2", {}, "Keys"), message, created, form, h("h2", {}, "All keys"), list);
  load();
  const stops = [
    on("key.created", (key) => { if (key.id !== shownID) load(); }),
    on("key.revoked", load),
    on("reload", load),
  ];
  return () => stops.forEach((stop) => stop());
}
