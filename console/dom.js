// Small DOM helpers. Text from the daemon or a model always goes in as text (textContent), never as HTML.

/** An element with attributes (`on*` functions become listeners) and children (strings become text nodes). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child)))));
  return element;
}

/** A table with a header row; `rows` are arrays of cells (each a node or text), labelled for the narrow layout. */
export function table(headings, rows, rowAttributes = () => ({})) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headings.map((heading) => h("th", { scope: "col" }, heading)))),
    h("tbody", {}, rows.map(({ key, cells, item }) => h("tr", { ...rowAttributes(item), "data-key": key },
      cells.map((cell, index) => h("td", { "data-label": headings[index], class: cell?.className }, cell?.node ?? cell))))));
}

/** A cell showing a state, coloured by it. */
export function stateCell(state) {
  return { node: h("span", { class: `state-${state}`, "data-state": state }, state), className: "state" };
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatTime(text) {
  if (!text) return "–";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

/** Replaces a container's content. */
export function show(container, ...children) {
  container.replaceChildren(...children.flat().filter(Boolean));
}

/** A notice line; `error` colours it. */
export function notice(text, error = false) {
  return h("p", { class: error ? "notice error" : "notice", role: error ? "alert" : "status" }, text);
}

/** Asks for confirmation in the page's dialog; resolves true when confirmed. */
export function confirmAction(text, action = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    const form = document.getElementById("confirm-form");
    const cancel = document.getElementById("confirm-cancel");
    const finish = (answer) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      resolve(answer);
    };
    const onSubmit = (event) => { event.preventDefault(); finish(true); };
    const onCancel = (event) => { event.preventDefault(); finish(false); };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    cancel.focus();
  });
}
