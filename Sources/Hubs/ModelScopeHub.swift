import Foundation
import ModelText
import Transfer

/// ModelScope's HTTP API (docs/design/hubs.md, ModelScope). Blocking calls, for worker threads.
package struct ModelScopeHub: Sendable {
    package let settings: ModelScopeSettings
    package let requester: HubRequester
    /// The listing silently stops at this many entries; a full page means "list again per directory".
    package var listingLimit: Int

    package init(settings: ModelScopeSettings, requester: HubRequester, listingLimit: Int = 3000) {
        self.settings = settings
        self.requester = requester
        self.listingLimit = listingLimit
    }

    package var endpoint: String { settings.endpoint }

    package var downloadSettings: DownloadSettings {
        DownloadSettings(
            authOrigin: originOf(endpoint), authHeaders: settings.authHeaders, policy: requester.policy,
            stallTimeout: requester.stallTimeout, httpVersion: requester.httpVersion)
    }

    private func get(_ url: String, cancel: CancellationFlag, what: String) throws -> HubResponse {
        var headers = [("User-Agent", "modeld/0.1"), ("Accept-Encoding", "identity")]
        if originOf(url) == originOf(endpoint) { headers += settings.authHeaders }
        return try requester.send(DownloadRequest(url: url, headers: headers), cancel: cancel, what: what)
    }

    private struct Envelope<T: Decodable>: Decodable {
        var Code: Int?
        var Data: T?
        var Message: String?
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: HubResponse, repo: String, what: String) throws -> T {
        guard response.status == 200 else { throw mapError(response, repo: repo) }
        guard let envelope = try? JSONLimits.decode(Envelope<T>.self, from: response.body) else {
            throw PullError(.invalidResponse, "\(endpoint) sent an unreadable reply while \(what)")
        }
        guard envelope.Code == nil || envelope.Code == 200, let data = envelope.Data else {
            throw PullError(.invalidResponse, "ModelScope refused \(what): \(envelope.Message ?? "no message")")
        }
        return data
    }

    /// Checks that the revision is a branch or a tag.
    package func checkRevision(repo: String, revision: String, cancel: CancellationFlag) throws {
        struct Item: Decodable { var Revision: String }
        struct Map: Decodable {
            var Branches: [Item]?
            var Tags: [Item]?
        }
        struct Revisions: Decodable { var RevisionMap: Map }
        let url = "\(endpoint)/api/v1/models/\(repo)/revisions"
        let response = try get(url, cancel: cancel, what: "reading the revisions of \(repo)")
        let data = try decode(Revisions.self, response, repo: repo, what: "reading the revisions of \(repo)")
        let names = (data.RevisionMap.Branches ?? []).map(\.Revision) + (data.RevisionMap.Tags ?? []).map(\.Revision)
        guard names.contains(revision) else {
            throw PullError(
                .revisionNotFound,
                "revision \(revision) not found in \(repo) on \(endpoint) (branches and tags: \(names.joined(separator: ", ")))")
        }
    }

    /// Every file at a revision, working around the listing's silent truncation.
    package func listFiles(repo: String, revision: String, cancel: CancellationFlag) throws -> [MSFileEntry] {
        var files: [String: MSFileEntry] = [:]
        try list(repo: repo, revision: revision, root: nil, into: &files, cancel: cancel)
        return files.values.sorted { $0.path < $1.path }
    }

    private func list(repo: String, revision: String, root: String?, into files: inout [String: MSFileEntry], cancel: CancellationFlag) throws {
        let entries = try listing(repo: repo, revision: revision, root: root, recursive: true, cancel: cancel)
        if entries.count < listingLimit {
            for entry in entries where entry.type == "blob" { files[entry.path] = entry }
            return
        }
        // Truncated: take this level's files, then each directory on its own.
        let level = try listing(repo: repo, revision: revision, root: root, recursive: false, cancel: cancel)
        if level.count >= listingLimit {
            throw PullError(
                .invalidResponse, "\(repo) has more than \(listingLimit) entries in \(root ?? "its top directory"); ModelScope cannot list them all")
        }
        for entry in level {
            if entry.type == "blob" {
                files[entry.path] = entry
            } else if entry.type == "tree" {
                try list(repo: repo, revision: revision, root: entry.path, into: &files, cancel: cancel)
            }
        }
    }

    private func listing(repo: String, revision: String, root: String?, recursive: Bool, cancel: CancellationFlag) throws -> [MSFileEntry] {
        struct Files: Decodable { var Files: [MSFileEntry]? }
        var url = "\(endpoint)/api/v1/models/\(repo)/repo/files?Revision=\(percentEncodeWhole(revision))&Recursive=\(recursive ? "True" : "False")"
        if let root { url += "&Root=\(percentEncodeWhole(root))" }
        let what = "listing the files of \(repo)@\(revision)"
        let response = try get(url, cancel: cancel, what: what)
        return try decode(Files.self, response, repo: repo, what: what).Files ?? []
    }

    /// The download URL of a file.
    package func downloadURL(repo: String, revision: String, path: String) -> String {
        "\(endpoint)/api/v1/models/\(repo)/repo?Revision=\(percentEncodeWhole(revision))&FilePath=\(percentEncodeWhole(path))"
    }

    package func mapError(_ response: HubResponse, repo: String) -> PullError {
        struct Body: Decodable { var Message: String? }
        let message = (try? JSONLimits.decode(Body.self, from: response.body))?.Message
        var detail = message.map { ": \($0.replacingOccurrences(of: "\n", with: " "))" } ?? ""
        if let token = settings.token { detail = detail.replacingOccurrences(of: token, with: "***") }
        switch response.status {
        case 404: return PullError(.repoNotFound, "model \(repo) not found on ModelScope (\(endpoint))")
        case 401, 403:
            return PullError(
                .unauthorized,
                "ModelScope denied access to \(repo) (HTTP \(response.status))\(detail); set MODELSCOPE_API_TOKEN to a token with access")
        default:
            return PullError(.invalidResponse, "ModelScope answered HTTP \(response.status) for \(repo)\(detail)")
        }
    }
}
