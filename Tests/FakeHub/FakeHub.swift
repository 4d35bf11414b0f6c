import Crypto
import Foundation
import Hummingbird
import Logging
import Synchronization

/// A fake Hugging Face hub and ModelScope on loopback, answering exactly as docs/design/hubs.md describes,
/// with faults on demand.
///
/// Two origins: the hub (`endpoint`) and a "CDN" (`cdnEndpoint`, another port) that serves LFS blobs
/// behind the hub's 302s. Every request is logged (method, origin, path, `Authorization`, `Range`) and
/// the body bytes served per file are counted, so tests can see what went over the wire.
///
/// ```swift
/// try await FakeHub.withRunning { hub in
///     hub.addRepo("acme/tiny", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])])
///     // HF_ENDPOINT = hub.endpoint, MODELSCOPE_ENDPOINT = hub.endpoint
/// }
/// ```
package final class FakeHub: Sendable {
    /// The loopback ports the hub and its CDN listen on (plain HTTP).
    package let hubPort: Int
    package let cdnPort: Int
    /// `http://127.0.0.1:<port>` of the hub, or the origin of a front before it (``setPublicOrigins(hub:cdn:)``).
    package var endpoint: String { state.withLock { $0.hubOrigin } }
    /// `http://127.0.0.1:<port>` of the CDN that serves LFS files, or the origin of a front before it.
    package var cdnEndpoint: String { state.withLock { $0.cdnOrigin } }
    /// The token that opens gated and private repositories (`Authorization: Bearer <token>`).
    package static let validToken = "hf_fake_valid_token_0123456789"

    let state = Mutex(FakeHubState())

    init(hubPort: Int, cdnPort: Int) {
        self.hubPort = hubPort
        self.cdnPort = cdnPort
        state.withLock {
            $0.hubOrigin = "http://127.0.0.1:\(hubPort)"
            $0.cdnOrigin = "http://127.0.0.1:\(cdnPort)"
        }
    }

    /// Starts the hub and its CDN on ephemeral loopback ports, runs `body`, and stops them.
    package static func withRunning<T: Sendable>(_ body: @Sendable (FakeHub) async throws -> T) async throws -> T {
        // Both servers bind port 0 and report the port the kernel chose: picking a "free" port first and
        // binding it later races with other tests doing the same.
        let box = Mutex<FakeHub?>(nil)
        let ports = PortReports()
        var logger = Logger(label: "fakehub")
        logger.logLevel = .critical
        let hubApp = Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in await box.withLock { $0 }!.respond(request, origin: .hub) },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in ports.report(.hub, channel.localAddress?.port ?? 0) },
            logger: logger)
        let cdnApp = Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in await box.withLock { $0 }!.respond(request, origin: .cdn) },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in ports.report(.cdn, channel.localAddress?.port ?? 0) },
            logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await hubApp.run() }
            group.addTask { try await cdnApp.run() }
            let (hubPort, cdnPort) = try await ports.both()
            let hub = FakeHub(hubPort: hubPort, cdnPort: cdnPort)
            box.withLock { $0 = hub }
            do {
                let result = try await body(hub)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    // MARK: Setting up repositories

    /// Adds a Hugging Face repository. The first commit's sha becomes `main` unless `refs` say otherwise.
    package func addRepo(
        _ id: String, commits: [FakeCommit], refs: [String: String]? = nil, gated: Bool = false, isPrivate: Bool = false
    ) {
        var repo = FakeRepo(id: id, commits: [:], refs: [:], gated: gated, isPrivate: isPrivate)
        for commit in commits { repo.commits[commit.sha] = commit }
        repo.refs = refs ?? ["main": commits.last!.sha]
        state.withLock { $0.repos[id] = repo }
    }

    /// Adds a ModelScope repository (`owner/name`); `refs` are its branches and tags (default `master`).
    package func addModelScopeRepo(_ id: String, commits: [FakeCommit], branches: [String: String]? = nil, tags: [String: String] = [:]) {
        var repo = FakeRepo(id: id, commits: [:], refs: [:], gated: false, isPrivate: false)
        for commit in commits { repo.commits[commit.sha] = commit }
        repo.refs = branches ?? ["master": commits.last!.sha]
        repo.tags = tags
        state.withLock { $0.modelScopeRepos[id] = repo }
    }

    /// Points a ref at another commit.
    package func moveRef(_ repo: String, _ ref: String, to sha: String) {
        state.withLock { $0.repos[repo]?.refs[ref] = sha }
    }

    /// After the next revision call that resolves `ref`, the ref moves to `sha` (a push between two calls).
    package func moveRefAfterNextResolve(_ repo: String, _ ref: String, to sha: String) {
        state.withLock { $0.repos[repo]?.pendingMove = (ref, sha) }
    }

    /// Adds a fault; it applies to GETs of the file's bytes (on the hub or the CDN).
    package func addFault(_ fault: FakeFault) {
        state.withLock { $0.faults.append(FaultState(fault: fault, remaining: fault.times)) }
    }

    /// Names these origins in links and redirects (and as ``endpoint`` and ``cdnEndpoint``): for a front, such as
    /// a TLS proxy, that clients reach the hub and its CDN through.
    package func setPublicOrigins(hub: String, cdn: String) {
        state.withLock {
            $0.hubOrigin = hub
            $0.cdnOrigin = cdn
        }
    }

    /// Tree pages hold this many entries (pagination with `Link: rel="next"`).
    package func setTreePageSize(_ size: Int) {
        state.withLock { $0.treePageSize = size }
    }

    /// ModelScope's listing truncates silently at this many entries (3000 on the real hub).
    package func setModelScopeListingLimit(_ limit: Int) {
        state.withLock { $0.modelScopeListingLimit = limit }
    }

    /// Regular files' HEAD and GET first answer with a same-origin 307 to `/api/resolve-cache/...`.
    package func setSameOriginRedirects(_ enabled: Bool) {
        state.withLock { $0.sameOriginRedirects = enabled }
    }

    // MARK: What happened

    /// Every request so far.
    package var requests: [FakeRequest] { state.withLock { $0.log } }

    /// Body bytes of a file served so far (hub and CDN).
    package func servedBytes(_ path: String) -> Int { state.withLock { $0.served[path, default: 0] } }

    /// Clears the request log and byte counters.
    package func resetCounters() {
        state.withLock {
            $0.log = []
            $0.served = [:]
        }
    }
}

/// A file of a fake repository.
package struct FakeFile: Sendable {
    package var path: String
    package var data: Data
    /// Stored with Git LFS (served through the CDN, etag = sha256) or as a regular git file (etag = git sha1).
    package var lfs: Bool

    /// - Parameter lfs: defaults to true for weights (`.safetensors`, `.bin`, `.gguf`, `.pt`, `.pth`) and files over 1 MiB.
    package init(_ path: String, _ data: Data, lfs: Bool? = nil) {
        self.path = path
        self.data = data
        let weights = [".safetensors", ".bin", ".gguf", ".pt", ".pth"].contains { path.hasSuffix($0) }
        self.lfs = lfs ?? (weights || data.count > 1 << 20)
    }

    package init(_ path: String, _ text: String, lfs: Bool? = nil) {
        self.init(path, Data(text.utf8), lfs: lfs)
    }

    package var sha256: String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

    package var gitSHA1: String {
        var hash = Insecure.SHA1()
        hash.update(data: Data("blob \(data.count)\0".utf8))
        hash.update(data: data)
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The etag the hub sends: sha256 for LFS files, git sha1 otherwise.
    package var etag: String { lfs ? sha256 : gitSHA1 }
}

/// A commit of a fake repository.
package struct FakeCommit: Sendable {
    package var sha: String
    package var files: [FakeFile]

    /// - Parameter sha: defaults to a sha derived from the file contents.
    package init(sha: String? = nil, files: [FakeFile]) {
        self.files = files
        if let sha {
            self.sha = sha
        } else {
            var hash = Insecure.SHA1()
            for file in files {
                hash.update(data: Data(file.path.utf8))
                hash.update(data: file.data)
            }
            self.sha = hash.finalize().map { String(format: "%02x", $0) }.joined()
        }
    }
}

/// A fault the fake injects into file downloads.
package enum FakeFault: Sendable {
    /// The body stops after `afterBytes` bytes of the response and the connection closes.
    case cutBody(path: String, afterBytes: Int, times: Int = 1)
    /// Answers `status` (503, 500, 429, ...) instead of the bytes; `retryAfter` seconds for 429.
    case status(path: String, code: Int, retryAfter: Int? = nil, times: Int = 1)
    /// Serves the file with one byte flipped (`times: .max` for always).
    case corrupt(path: String, times: Int = 1)
    /// Sends `afterBytes` bytes, then nothing for `seconds` before closing.
    case stall(path: String, afterBytes: Int, seconds: Int, times: Int = 1)
    /// Answers `Range: bytes=a-b` as if it were `bytes=a-` (Content-Range to the end of the file): the bytes asked
    /// for at once, the rest only after `seconds`.
    case overlongRange(path: String, seconds: Int, times: Int = 1)

    var path: String {
        switch self {
        case .cutBody(let path, _, _), .status(let path, _, _, _), .corrupt(let path, _), .stall(let path, _, _, _),
            .overlongRange(let path, _, _):
            path
        }
    }

    var times: Int {
        switch self {
        case .cutBody(_, _, let times), .status(_, _, _, let times), .corrupt(_, let times), .stall(_, _, _, let times),
            .overlongRange(_, _, let times):
            times
        }
    }
}

/// A request the fake received.
package struct FakeRequest: Sendable {
    package enum Origin: String, Sendable { case hub, cdn }
    package var origin: Origin
    package var method: String
    package var path: String
    package var query: String?
    package var authorization: String?
    package var cookie: String?
    package var range: String?
}

struct FakeRepo: Sendable {
    var id: String
    var commits: [String: FakeCommit]
    var refs: [String: String]
    var tags: [String: String] = [:]
    var gated: Bool
    var isPrivate: Bool
    var pendingMove: (ref: String, sha: String)?

    func commit(for revision: String) -> FakeCommit? {
        if let sha = refs[revision] ?? tags[revision] { return commits[sha] }
        return commits[revision]
    }
}

struct FaultState: Sendable {
    var fault: FakeFault
    var remaining: Int
}

struct FakeHubState: Sendable {
    var hubOrigin = ""
    var cdnOrigin = ""
    var repos: [String: FakeRepo] = [:]
    var modelScopeRepos: [String: FakeRepo] = [:]
    var faults: [FaultState] = []
    var log: [FakeRequest] = []
    var served: [String: Int] = [:]
    var treePageSize = 1000
    var modelScopeListingLimit = 3000
    var sameOriginRedirects = false

    /// Takes the first active fault for a file, counting it down.
    mutating func takeFault(for path: String) -> FakeFault? {
        guard let index = faults.firstIndex(where: { $0.fault.path == path && $0.remaining > 0 }) else { return nil }
        if faults[index].remaining != .max { faults[index].remaining -= 1 }
        return faults[index].fault
    }
}

/// Asks the kernel for a free loopback port.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits until something accepts connections on a loopback port.
func waitForListening(port: Int) async throws {
    for _ in 0..<400 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if connected == 0 { return }
        try await Task.sleep(for: .milliseconds(25))
    }
    throw POSIXError(.ETIMEDOUT)
}

/// The ports the two fake servers bound, reported from their `onServerRunning`.
final class PortReports: Sendable {
    private let state = Mutex<(hub: Int?, cdn: Int?)>((nil, nil))

    func report(_ origin: FakeRequest.Origin, _ port: Int) {
        state.withLock { origin == .hub ? ($0.hub = port) : ($0.cdn = port) }
    }

    /// Waits (bounded) until both servers listen.
    func both() async throws -> (Int, Int) {
        for _ in 0..<1000 {
            if case let (hub?, cdn?) = state.withLock({ $0 }) { return (hub, cdn) }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw POSIXError(.ETIMEDOUT)
    }
}
