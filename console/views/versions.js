// Local versions: what is on disk (repo, source, revision, commit, size, state), with verify (and its result),
// remove (after a confirmation) and export (a download of the archive). Kept current by version events.

import { get, post, request } from "../api.js";
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

  /**
   * Downloads the version's archive. The request carries the key in its header (never in a URL), so the archive is
   * read into a Blob and saved from there, under the name the daemon gives it.
   */
  async function download(version, button) {
    button.disabled = true;
    show(message, notice(`Exporting ${version.repo} ${version.commit.slice(0, 12)}…`));
    try {
      const query = new URLSearchParams({ source: version.source, revision: version.commit });
      const response = await request(`/api/v1/models/${encodeURIComponent(version.repo)}/export?${query}`, { raw: true });
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? "model.tar.zst";
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      // The download has taken the Blob's URL by the time this runs; only then is the Blob freed.
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      show(message, notice(`Exported ${version.repo} ${version.commit.slice(0, 12)} as ${name}.`));
    } catch (error) {
      show(message, notice(`Export failed: ${error.message}`, true));
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
                h("button", {
                  type: "button", class: "export", disabled: version.state !== "ready",
                  onclick: (event) => download(version, event.currentTarget),
                }, "Export"), " ",
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
