import Foundation
import HTTPTypes
import Hummingbird

extension FakeHub {
    /// ModelScope's API under `/api/v1` (docs/design/hubs.md, ModelScope).
    func respondModelScope(_ request: Request, parts: [String]) async -> Response {
        // models/{owner}/{name}/revisions | models/{owner}/{name}/repo/files | models/{owner}/{name}/repo
        guard parts.count >= 4, parts[0] == "models" else { return envelopeError(404, "no route") }
        let repoID = "\(parts[1])/\(parts[2])"
        guard let repo = state.withLock({ $0.modelScopeRepos[repoID] }) else {
            return envelopeError(404, "model \(repoID) not found")
        }
        let query = request.uri.queryParameters
        switch Array(parts[3...]) {
        case ["revisions"]:
            let branches = repo.refs.keys.sorted().map { ["Revision": $0, "CreatedAt": 1_700_000_000] as [String: Any] }
            let tags = repo.tags.keys.sorted().map { ["Revision": $0, "CreatedAt": 1_710_000_000] as [String: Any] }
            return envelope(["RevisionMap": ["Branches": branches, "Tags": tags]])
        case ["repo", "files"]:
            let revision = query["Revision"].map(String.init) ?? "master"
            guard let commit = repo.commit(for: revision) else { return envelopeError(404, "revision \(revision) not found") }
            let root = query["Root"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
            var entries: [[String: Any]] = []
            var directories = Set<String>()
            for file in commit.files {
                var components = file.path.split(separator: "/").dropLast()
                while !components.isEmpty {
                    directories.insert(components.joined(separator: "/"))
                    components = components.dropLast()
                }
            }
            let recursive = (query["Recursive"].map(String.init) ?? "False").lowercased() == "true"
            func under(_ path: String) -> Bool {
                let inside = root.map { path.hasPrefix($0 + "/") } ?? true
                guard inside, !recursive else { return inside }
                let rest = root.map { String(path.dropFirst($0.count + 1)) } ?? path
                return !rest.contains("/")
            }
            for directory in directories.sorted() where under(directory) {
                entries.append([
                    "Name": String(directory.split(separator: "/").last!), "Path": directory, "Type": "tree", "Size": 0,
                    "Sha256": "", "Revision": commit.sha, "IsLFS": false,
                ])
            }
            for file in commit.files where under(file.path) {
                entries.append([
                    "Name": String(file.path.split(separator: "/").last!), "Path": file.path, "Type": "blob",
                    "Size": file.data.count, "Sha256": file.sha256, "Revision": commit.sha, "IsLFS": file.lfs,
                ])
            }
            entries.sort { ($0["Path"] as! String) < ($1["Path"] as! String) }
            let limit = state.withLock { $0.modelScopeListingLimit }
            return envelope(["Files": Array(entries.prefix(limit))])
        case ["repo"]:
            let revision = query["Revision"].map(String.init) ?? "master"
            guard let commit = repo.commit(for: revision) else { return envelopeError(404, "revision \(revision) not found") }
            let path = query["FilePath"].map(String.init) ?? ""
            guard let file = commit.files.first(where: { $0.path == path }) else { return envelopeError(404, "file \(path) not found") }
            if file.lfs {
                var headers = HTTPFields()
                headers[.location] = "\(cdnEndpoint)/blob/\(file.sha256)?Signature=fake"
                headers[.contentLength] = "0"
                return Response(status: .found, headers: headers, body: ResponseBody())
            }
            return await serve(file, request: request, commit: commit.sha, lfsDirect: false)
        default:
            return envelopeError(404, "no route")
        }
    }

    func envelope(_ data: Any) -> Response {
        json(["Code": 200, "Data": data, "Message": "success", "RequestId": UUID().uuidString, "Success": true])
    }

    func envelopeError(_ status: Int, _ message: String) -> Response {
        json(["Code": status, "Message": message, "RequestId": UUID().uuidString, "Success": false], status: status)
    }
}
