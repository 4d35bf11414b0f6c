import Foundation
import ModelText
import Transfer

/// The Hugging Face hub's HTTP API, as `snapshot_download` uses it (docs/design/hubs.md, Hugging Face). Blocking calls, for worker threads.
package struct HuggingFaceHub: Sendable {
    package let settings: HuggingFaceSettings
    package let requester: HubRequester

    package init(settings: HuggingFaceSettings, requester: HubRequester) {
        self.settings = settings
        self.requester = requester
    }

    package var endpoint: String { settings.endpoint }
    var authHeaders: [(String, String)] { settings.token.map { [("Authorization", "Bearer \($0)")] } ?? [] }
    package var downloadSettings: DownloadSettings {
        DownloadSettings(
            authOrigin: originOf(endpoint), authHeaders: authHeaders, policy: requester.policy,
            stallTimeout: requester.stallTimeout, httpVersion: requester.httpVersion)
    }

    private func headers(for url: String) -> [(String, String)] {
        var headers = [("User-Agent", "modeld/0.1"), ("Accept-Encoding", "identity")]
        if originOf(url) == originOf(endpoint) { headers += authHeaders }
        return headers
    }

    /// Whether a revision is already a commit (40 hex digits): no call needed.
    package static func isCommit(_ revision: String) -> Bool {
        revision.count == 40 && revision.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// `GET /api/models/{repo}/revision/{rev}` → the commit.
    package func resolveCommit(repo: String, revision: String, cancel: CancellationFlag) throws -> String {
        if Self.isCommit(revision) { return revision }
        let url = "\(endpoint)/api/models/\(repo)/revision/\(percentEncodeWhole(revision))"
        let response = try requester.send(
            DownloadRequest(url: url, headers: headers(for: url)), cancel: cancel, what: "resolving \(repo)@\(revision)")
        guard response.status == 200 else { throw mapError(response, repo: repo, revision: revision, file: nil) }
        struct Info: Decodable { var sha: String? }
        guard let info = try? JSONLimits.decode(Info.self, from: response.body), let sha = info.sha, Self.isCommit(sha) else {
            throw PullError(.invalidResponse, "\(endpoint) sent no commit for \(repo)@\(revision)")
        }
        return sha
    }

    /// `GET /api/models/{repo}/tree/{commit}?recursive=true`, following `Link: rel="next"`.
    /// - Returns: the files (directories dropped).
    package func listTree(repo: String, commit: String, cancel: CancellationFlag) throws -> [HFTreeEntry] {
        var url: String? = "\(endpoint)/api/models/\(repo)/tree/\(commit)?recursive=true&expand=false"
        var files: [HFTreeEntry] = []
        var pages = 0
        while let current = url {
            pages += 1
            guard pages < 10_000 else { throw PullError(.invalidResponse, "\(endpoint) keeps paginating the tree of \(repo)") }
            let response = try requester.send(
                DownloadRequest(url: current, headers: headers(for: current)), cancel: cancel,
                what: "listing the files of \(repo)@\(commit)")
            guard response.status == 200 else { throw mapError(response, repo: repo, revision: commit, file: nil) }
            let page: [HFTreeEntry]
            do {
                page = try JSONLimits.decode([HFTreeEntry].self, from: response.body)
            } catch {
                throw PullError(.invalidResponse, "\(endpoint) sent an unreadable file list for \(repo): \(error)")
            }
            files += page.filter { $0.type == "file" }
            url = nextLink(response.header("link")).map { next in
                next.hasPrefix("/") ? endpoint + next : next
            }
        }
        return files
    }

    /// `HEAD /{repo}/resolve/{commit}/{path}`: follows same-origin redirects, stops at a cross-origin one.
    package func fileMetadata(repo: String, commit: String, path: HubPath, cancel: CancellationFlag) throws -> HFFileMetadata {
        var url = "\(endpoint)/\(repo)/resolve/\(commit)/\(percentEncodePath(path.value))"
        var hops = 0
        while true {
            let response = try requester.send(
                DownloadRequest(method: "HEAD", url: url, headers: headers(for: url)), cancel: cancel,
                what: "reading the metadata of \(repo)/\(path)")
            let status = response.status
            if (300...399).contains(status), let location = response.header("location"),
                let next = URL(string: location, relativeTo: URL(string: url))?.absoluteString,
                originOf(next) == originOf(url), response.header("x-linked-etag") == nil
            {
                hops += 1
                guard hops <= 10 else { throw PullError(.invalidResponse, "too many redirects for \(repo)/\(path)") }
                url = next
                continue
            }
            guard (200...399).contains(status) else {
                throw mapError(response, repo: repo, revision: commit, file: path.value)
            }
            let etagHeader = response.header("x-linked-etag") ?? response.header("etag")
            let sizeHeader = response.header("x-linked-size") ?? ((300...399).contains(status) ? nil : response.header("content-length"))
            guard let commitHeader = response.header("x-repo-commit"), let etagHeader,
                let size = sizeHeader.flatMap({ Int64($0) })
            else {
                throw PullError(
                    .invalidResponse,
                    "\(endpoint) did not send the commit, etag and size of \(repo)/\(path) (is HF_ENDPOINT a Hugging Face hub or mirror?)")
            }
            var etag = etagHeader
            if etag.hasPrefix("W/") { etag.removeFirst(2) }
            etag = etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            var download = url
            if (300...399).contains(status), let location = response.header("location"),
                let resolved = URL(string: location, relativeTo: URL(string: url))?.absoluteString
            {
                download = resolved
            }
            return HFFileMetadata(commit: commitHeader, etag: etag.lowercased(), size: size, downloadURL: download)
        }
    }

    /// Turns an error reply into a sentence the user can act on.
    package func mapError(_ response: HubResponse, repo: String, revision: String?, file: String?) -> PullError {
        let code = response.header("x-error-code")
        var serverMessage = response.header("x-error-message")
        if serverMessage == nil {
            struct Body: Decodable { var error: String? }
            serverMessage = (try? JSONLimits.decode(Body.self, from: response.body))?.error
        }
        let detail = serverMessage.map { ": \(scrub($0))" } ?? ""
        let status = response.status
        switch code {
        case "GatedRepo":
            return PullError(.gated, "model \(repo) is gated: accept its licence at \(endpoint)/\(repo) and set HF_TOKEN")
        case "RepoNotFound":
            return PullError(.repoNotFound, "repository \(repo) not found on \(endpoint) (if it is private, set HF_TOKEN)")
        case "RevisionNotFound":
            return PullError(.revisionNotFound, "revision \(revision ?? "?") not found in \(repo) on \(endpoint)")
        case "EntryNotFound":
            return PullError(.entryNotFound, "file \(file ?? "?") not found in \(repo) at \(revision ?? "?")")
        default:
            break
        }
        switch status {
        case 401:
            if settings.token != nil {
                return PullError(.unauthorized, "\(endpoint) rejected HF_TOKEN for \(repo) (HTTP 401)\(detail); check the token")
            }
            return PullError(.repoNotFound, "repository \(repo) not found on \(endpoint) (if it is private, set HF_TOKEN)")
        case 403:
            return PullError(.unauthorized, "access to \(repo) on \(endpoint) denied (HTTP 403)\(detail); check HF_TOKEN's permissions")
        case 404:
            if let file { return PullError(.entryNotFound, "file \(file) not found in \(repo) at \(revision ?? "?")") }
            return PullError(.repoNotFound, "repository \(repo) not found on \(endpoint)")
        default:
            return PullError(.invalidResponse, "\(endpoint) answered HTTP \(status) for \(repo)\(detail)")
        }
    }

    /// Removes the token from server text, should a server echo it.
    private func scrub(_ text: String) -> String {
        let oneLine = text.replacingOccurrences(of: "\n", with: " ")
        guard let token = settings.token else { return oneLine }
        return oneLine.replacingOccurrences(of: token, with: "***")
    }
}

/// The URL of `rel="next"` in a `Link` header.
func nextLink(_ header: String?) -> String? {
    guard let header else { return nil }
    for part in header.split(separator: ",") {
        let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = pieces.first, first.hasPrefix("<"), first.hasSuffix(">") else { continue }
        if pieces.dropFirst().contains(where: { $0.replacingOccurrences(of: " ", with: "") == "rel=\"next\"" || $0 == "rel=next" }) {
            return String(first.dropFirst().dropLast())
        }
    }
    return nil
}
