// Local versions: what is on disk (repo, source, revision, commit, size, state), with verify (and its result),
// remove (after a confirmation), export (a download of the archive) and import (an archive uploaded with a progress
// bar). Kept current by version events.

import { get, post, request, upload } from "../api.js";
import { on } from "../events.js";
import { confirmAction, formatBytes, formatTime, h, notice, show, stateCell, table } from "../dom.js";

export const title = "Local versions";

export function mount(container) {
  const message = h("div", { id: "versions-message" });
  const list = h("div", { id: "versions-table" });
  const archive = h("input", { type: "file", id: "import-file", name: "archive", required: true, accept: ".tar.zst,.tar.gz,.tgz,.tar,.zip" });
  const importStatus = h("div", { id: "import-status" });
  const importForm = h("form", { id: "import-form", class: "inline", onsubmit: (event) => { event.preventDefault(); importArchive(event.submitter); } },
    h("label", {}, "Archive to import (.tar.zst, .tar.gz, .tar, .zip)", archive), h("button", { type: "submit" }, "Import"));
  show(container, h("h2", {}, "Local versions"), importForm, importStatus, message, list);

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

  /** Uploads the chosen archive with a live progress bar, then shows the version it held or the daemon's error. */
  async function importArchive(button) {
    const file = archive.files[0];
    if (!file) return;
    button.disabled = true;
    const bar = h("progress", { max: Math.max(file.size, 1), value: 0, "aria-label": `Uploading ${file.name}` });
    const sent = h("span", { class: "muted" }, `0 B of ${formatBytes(file.size)}`);
    show(importStatus, h("p", {}, `Uploading ${file.name}… `, sent), bar);
    try {
      const result = await upload("/api/v1/models/import", file, (loaded, total) => {
        bar.max = Math.max(total, 1);
        bar.value = loaded;
        sent.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}`;
      });
      const version = result.version;
      show(importStatus, notice(`Imported ${version.repo} ${version.commit.slice(0, 12)}: ${result.files} files, ${formatBytes(result.bytes)}.`));
      importForm.reset();
      load();
    } catch (error) {
      show(importStatus, notice(`Import failed: ${error.message}`, true));
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
