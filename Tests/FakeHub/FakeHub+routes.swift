import Foundation
import HTTPTypes
import Hummingbird

extension FakeHub {
    /// Answers one request, on the hub or the CDN origin.
    func respond(_ request: Request, origin: FakeRequest.Origin) async -> Response {
        let rawPath = request.uri.path
        let query = request.uri.query
        state.withLock {
            $0.log.append(
                FakeRequest(
                    origin: origin, method: request.method.rawValue, path: rawPath, query: query,
                    authorization: request.headers[.authorization], cookie: request.headers[.cookie],
                    range: request.headers[.range]))
        }
        let parts = rawPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        if origin == .cdn {
            // /blob/<sha256>
            guard parts.count == 2, parts[0] == "blob", let file = lfsFile(sha256: parts[1]) else {
                return error(404, code: nil, message: "no such blob")
            }
            return await serve(file, request: request, commit: nil, lfsDirect: true)
        }
        if parts.count >= 2, parts[0] == "api", parts[1] == "v1" {
            return await respondModelScope(request, parts: Array(parts.dropFirst(2)))
        }
        if parts.count >= 5, parts[0] == "api", parts[1] == "models" {
            let repoID = "\(parts[2])/\(parts[3])"
            let revision = parts.count >= 6 ? decode(parts[5]) : "main"
            switch parts[4] {
            case "revision" where parts.count == 6: return revisionInfo(repoID, revision: revision, request: request)
            case "tree" where parts.count >= 6: return tree(repoID, revision: revision, request: request)
            default: break
            }
        }
        if parts.count >= 7, parts[0] == "api", parts[1] == "resolve-cache", parts[2] == "models" {
            // /api/resolve-cache/models/{owner}/{name}/{commit}/{path...}
            let repoID = "\(parts[3])/\(parts[4])"
            let path = parts[6...].map(decode).joined(separator: "/")
            return await resolve(repoID, revision: parts[5], path: path, request: request, viaCache: true)
        }
        if parts.count >= 5, parts[2] == "resolve" {
            let repoID = "\(parts[0])/\(parts[1])"
            let path = parts[4...].map(decode).joined(separator: "/")
            return await resolve(repoID, revision: decode(parts[3]), path: path, request: request, viaCache: false)
        }
        return error(404, code: nil, message: "no route for \(rawPath)")
    }

    // MARK: Hugging Face

    /// Checks access: RepoNotFound (401) for unknown or private-without-token, GatedRepo (401) for gated.
    private func access(_ repoID: String, request: Request) -> Result<FakeRepo, HubFailure> {
        let repo = state.withLock { $0.repos[repoID] }
        let authorized = request.headers[.authorization] == "Bearer \(FakeHub.validToken)"
        guard let repo, !repo.isPrivate || authorized else {
            return .failure(HubFailure(status: 401, code: "RepoNotFound", message: "Repository not found for url: \(repoID)."))
        }
        if repo.gated && !authorized {
            return .failure(
                HubFailure(
                    status: 401, code: "GatedRepo",
                    message: "Access to model \(repoID) is restricted. You must have access to it and be authenticated to access it. Please log in."))
        }
        return .success(repo)
    }

    private func revisionInfo(_ repoID: String, revision: String, request: Request) -> Response {
        let repo: FakeRepo
        switch access(repoID, request: request) {
        case .failure(let failure): return error(failure)
        case .success(let found): repo = found
        }
        guard let commit = repo.commit(for: revision) else {
            return error(404, code: "RevisionNotFound", message: "Invalid rev id: \(revision)")
        }
        state.withLock { state in
            if let move = state.repos[repoID]?.pendingMove, move.ref == revision {
                state.repos[repoID]?.refs[move.ref] = move.sha
                state.repos[repoID]?.pendingMove = nil
            }
        }
        let siblings = commit.files.map { ["rfilename": $0.path] }
        let body: [String: Any] = [
            "id": repoID, "sha": commit.sha, "private": repo.isPrivate, "gated": repo.gated ? "manual" : false,
            "disabled": false, "lastModified": "2026-08-01T00:00:00.000Z", "siblings": siblings,
        ]
        return json(body)
    }

    private func tree(_ repoID: String, revision: String, request: Request) -> Response {
        let repo: FakeRepo
        switch access(repoID, request: request) {
        case .failure(let failure): return error(failure)
        case .success(let found): repo = found
        }
        guard let commit = repo.commit(for: revision) else {
            return error(404, code: "RevisionNotFound", message: "Invalid rev id: \(revision)")
        }
        // Files and the directories implied by their paths, in path order.
        var entries: [[String: Any]] = []
        var directories = Set<String>()
        for file in commit.files {
            var components = file.path.split(separator: "/").dropLast()
            while !components.isEmpty {
                directories.insert(components.joined(separator: "/"))
                components = components.dropLast()
            }
        }
        for directory in directories.sorted() {
            entries.append(["type": "directory", "oid": String(repeating: "d", count: 40), "path": directory])
        }
        for file in commit.files {
            var entry: [String: Any] = ["type": "file", "oid": file.gitSHA1, "size": file.data.count, "path": file.path]
            if file.lfs {
                entry["lfs"] = ["oid": file.sha256, "size": file.data.count, "pointerSize": 134]
                entry["oid"] = file.gitSHA1
            }
            entries.append(entry)
        }
        entries.sort { ($0["path"] as! String) < ($1["path"] as! String) }
        let pageSize = state.withLock { $0.treePageSize }
        let cursor = Int(request.uri.queryParameters["cursor"].map(String.init) ?? "0") ?? 0
        let page = Array(entries.dropFirst(cursor).prefix(pageSize))
        var headers = HTTPFields()
        if cursor + pageSize < entries.count {
            let next = "\(endpoint)/api/models/\(repoID)/tree/\(commit.sha)?recursive=true&expand=false&cursor=\(cursor + pageSize)"
            headers[name("Link")] = "<\(next)>; rel=\"next\""
        }
        return json(page, headers: headers)
    }

    private func resolve(_ repoID: String, revision: String, path: String, request: Request, viaCache: Bool) async -> Response {
        let repo: FakeRepo
        switch access(repoID, request: request) {
        case .failure(let failure): return error(failure)
        case .success(let found): repo = found
        }
        guard let commit = repo.commit(for: revision) else {
            return error(404, code: "RevisionNotFound", message: "Invalid rev id: \(revision)")
        }
        guard let file = commit.files.first(where: { $0.path == path }) else {
            return error(404, code: "EntryNotFound", message: "\(path) does not exist on \"\(revision)\"")
        }
        var headers = HTTPFields()
        headers[name("X-Repo-Commit")] = commit.sha
        if file.lfs {
            headers[.location] = "\(cdnEndpoint)/blob/\(file.sha256)?X-Amz-Signature=fakesignature&Expires=9999999999"
            headers[name("X-Linked-Etag")] = "\"\(file.sha256)\""
            headers[name("X-Linked-Size")] = String(file.data.count)
            headers[.eTag] = "\"\(file.gitSHA1)\""
            headers[.contentLength] = "0"
            return Response(status: .found, headers: headers, body: ResponseBody())
        }
        if !viaCache && state.withLock({ $0.sameOriginRedirects }) {
            headers[.location] = "/api/resolve-cache/models/\(repoID)/\(commit.sha)/\(path)?etag=\(file.gitSHA1)"
            headers[.contentLength] = "0"
            return Response(status: .temporaryRedirect, headers: headers, body: ResponseBody())
        }
        headers[.eTag] = "\"\(file.gitSHA1)\""
        return await serve(file, request: request, commit: commit.sha, lfsDirect: false, extraHeaders: headers)
    }

    private func lfsFile(sha256: String) -> FakeFile? {
        state.withLock { state in
            for repo in state.repos.values.map({ $0 }) + state.modelScopeRepos.values.map({ $0 }) {
                for commit in repo.commits.values {
                    if let file = commit.files.first(where: { $0.lfs && $0.sha256 == sha256 }) { return file }
                }
            }
            return nil
        }
    }

    // MARK: Bytes

    /// Serves a file's bytes with `Range` support and the faults registered for it.
    func serve(_ file: FakeFile, request: Request, commit: String?, lfsDirect: Bool, extraHeaders: HTTPFields = HTTPFields()) async -> Response {
        var headers = extraHeaders
        headers[.acceptRanges] = "bytes"
        let total = file.data.count
        if request.method == .head {
            headers[.contentLength] = String(total)
            return Response(status: .ok, headers: headers, body: ResponseBody())
        }
        let fault = state.withLock { $0.takeFault(for: file.path) }
        if case .status(_, let code, let retryAfter, _) = fault {
            var errorHeaders = HTTPFields()
            if let retryAfter { errorHeaders[.retryAfter] = String(retryAfter) }
            return error(code, code: nil, message: "fault: HTTP \(code)", headers: errorHeaders)
        }
        var start = 0
        var end = total - 1
        var status = HTTPResponse.Status.ok
        // For `.overlongRange`: where the bytes asked for end, and the pause before the rest.
        var pauseAt: Int?
        if let range = request.headers[.range], range.hasPrefix("bytes=") {
            let spec = range.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
            if spec.count == 2, let from = Int(spec[0]) {
                guard from < total else {
                    headers[.contentRange] = "bytes */\(total)"
                    return Response(status: .rangeNotSatisfiable, headers: headers, body: ResponseBody())
                }
                start = from
                if let to = Int(spec[1]) { end = min(to, total - 1) }
                if case .overlongRange = fault {
                    pauseAt = end + 1 - start
                    end = total - 1
                }
                status = .partialContent
                headers[.contentRange] = "bytes \(start)-\(end)/\(total)"
            }
        }
        var slice = file.data.subdata(in: start..<(end + 1))
        if case .corrupt = fault, !slice.isEmpty {
            let index = slice.count / 2
            slice[index] ^= 0xFF
        }
        let bytes = slice
        let length = bytes.count
        let pause = pauseAt
        headers[.contentLength] = String(length)
        let path = file.path
        let counter = self
        let body = ResponseBody(contentLength: length) { writer in
            let chunk = 1 << 20
            var offset = 0
            while offset < length {
                var stop = min(offset + chunk, length)
                var cutAfter: Int?
                switch fault {
                case .cutBody(_, let after, _): cutAfter = after
                case .stall(_, let after, _, _): cutAfter = after
                default: break
                }
                if let cutAfter, stop > cutAfter { stop = max(offset, cutAfter) }
                if let pause, offset < pause, stop > pause { stop = pause }
                if let pause, offset == pause, case .overlongRange(_, let seconds, _) = fault {
                    try await Task.sleep(for: .seconds(seconds))
                }
                if stop > offset {
                    try await writer.write(ByteBuffer(bytes: bytes[offset..<stop]))
                    counter.state.withLock { $0.served[path, default: 0] += stop - offset }
                    offset = stop
                }
                if let cutAfter, offset >= cutAfter {
                    if case .stall(_, _, let seconds, _) = fault {
                        try await Task.sleep(for: .seconds(seconds))
                    }
                    throw FakeHubCut()
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    // MARK: Replies

    struct HubFailure: Error {
        var status: Int
        var code: String?
        var message: String
    }

    func error(_ failure: HubFailure) -> Response {
        error(failure.status, code: failure.code, message: failure.message)
    }

    func error(_ status: Int, code: String?, message: String, headers: HTTPFields = HTTPFields()) -> Response {
        var headers = headers
        if let code { headers[name("X-Error-Code")] = code }
        headers[name("X-Error-Message")] = message
        return json(["error": message], status: status, headers: headers)
    }

    func json(_ value: Any, status: Int = 200, headers: HTTPFields = HTTPFields()) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    func name(_ text: String) -> HTTPField.Name { HTTPField.Name(text)! }

    func decode(_ component: String) -> String { component.removingPercentEncoding ?? component }
}

/// Thrown by a response body to cut the connection mid-transfer.
struct FakeHubCut: Error {}
