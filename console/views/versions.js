// Local versions: what is on disk (repo, source, revision, commit, size, state), with verify (and its result),
// remove (after a confirmation) and export (a download of the archive). Kept current by version events.

import { get, post } from "../api.js";
import { on } from "../events.js";
import { confirmAction, formatBytes, formatTime, h, notice, show, stateCell, table } from "../dom.js";

export const title = "Local versions";

export function mount(container) {
  const message = h("div", { id: "versions-message" });
  const list = h("div", { id: "versions-table" });
  show(container, h("h2", {}, "Local versions"), message, list);

  const selector = (version) => ({ model: version.repo, source: version.source, revision: version.commit });

  async function verify(version, button) {
    button.disabled = true;
    show(message, notice(`Verifying ${version.repo} ${version.commit.slice(0, 12)}…`));
    try {
      const [result] = await post("/api/v1/models/verify", selector(version));
      show(message, result.intact
        ? notice(`${version.repo}: intact (${result.files_checked} files, ${formatBytes(result.bytes_checked)} checked).`)
        : notice(`${version.repo}: damaged: ${result.damage.join("; ")}`, true));
    } catch (error) {
      show(message, notice(`Verify failed: ${error.message}`, true));
    } finally {
      button.disabled = false;
    }
  }

  async function remove(version) {
    const confirmed = await confirmAction(
      `Remove ${version.repo} at ${version.commit.slice(0, 12)} (${formatBytes(version.size_bytes)}) from disk?`, "Remove");
    if (!confirmed) return;
    try {
      await post("/api/v1/models/remove", selector(version));
      show(message, notice(`Removed ${version.repo} ${version.commit.slice(0, 12)}.`));
      load();
    } catch (error) {
      show(message, notice(`Remove failed: ${error.message}`, true));
    }
  }

  async function load() {
    try {
      const versions = await get("/api/v1/models/local");
      show(list, versions.length
        ? table(["Repo", "Source", "Revision", "Commit", "Size", "State", "Ready", ""], versions.map((version) => ({
          key: `${version.source}/${version.repo}@${version.commit}`,
          item: version,
          cells: [
            version.repo, version.source, version.revision, h("span", { class: "mono", title: version.commit }, version.commit.slice(0, 12)),
            formatBytes(version.size_bytes), stateCell(version.state), formatTime(version.ready_at),
            {
              className: "actions",
              node: h("span", {},
                h("button", { type: "button", onclick: (event) => verify(version, event.currentTarget) }, "Verify"), " ",
                h("button", { type: "button", class: "danger", onclick: () => remove(version) }, "Remove")),
            },
          ],
        })), (version) => ({ "data-repo": version.repo }))
        : h("p", { class: "muted" }, "Nothing is on disk yet: pull a model in the Models view."));
    } catch (error) {
      show(message, notice(`Could not read the local versions: ${error.message}`, true));
    }
  }

  load();
  const stops = ["version.added", "version.removed", "pull.done", "reload"].map((type) => on(type, load));
  return () => stops.forEach((stop) => stop());
}
