import Foundation
import HTTPTypes
import Hummingbird
import ModelStore
import ModeldAPI

/// Which web pages may call the daemon, and under which host names: CORS, and the defences of a daemon on
/// loopback against the pages its user visits.
///
/// - **Origins.** A request with an `Origin` header comes from a page. It runs only when the origin is the daemon's
///   own (its scheme and authority are the request's `Host`) or one of `cors_origins`; any other is refused with
///   403 before anything runs, which stops a page from driving the daemon with "simple" requests that need no
///   preflight. An allowed origin's preflight is answered here, and its replies carry the CORS headers.
/// - **Host names (DNS rebinding).** While no API key exists, a TCP request must name the daemon in `Host`: its
///   listen address, `localhost`, `127.0.0.1`, `[::1]`, the machine's name, an `allowed_hosts` entry, or any IP
///   address when the daemon listens on all of them. A page whose own name was made to resolve to 127.0.0.1 sends
///   its own name, and is refused with 403.
///
/// The control socket is not reached by browsers and is exempt.
struct OriginPolicy: Sendable {
    /// The origins allowed besides the daemon's own, lowercased.
    let allowedOrigins: Set<String>
    let allowsAnyOrigin: Bool
    /// Lowercased host names (no port, IPv6 without brackets).
    let hostNames: Set<String>
    /// True when the daemon listens on every address: any IP address names it.
    let acceptsAnyAddress: Bool

    /// The methods and request headers a preflight may ask for.
    static let allowedMethods = "GET, HEAD, POST, DELETE, OPTIONS"
    static let allowedHeaders = "Authorization, Content-Type, Last-Event-ID"
    /// How long a browser may cache a preflight's answer (seconds).
    static let maxAge = "600"

    init(configuration: DaemonConfiguration, machineName: String? = OriginPolicy.machineName()) {
        allowsAnyOrigin = configuration.corsOrigins.contains("*")
        allowedOrigins = Set(configuration.corsOrigins.filter { $0 != "*" })
        let listenHost = configuration.listen.host.lowercased()
        acceptsAnyAddress = listenHost == "0.0.0.0" || listenHost == "::"
        hostNames = Set(["localhost", "127.0.0.1", "::1", listenHost] + [machineName?.lowercased()].compactMap { $0 } + configuration.allowedHosts)
    }

    /// What to do with a request before it runs.
    enum Verdict: Equatable {
        /// No cross-origin concern: run it as it is.
        case proceed
        /// A page of an allowed origin: run it, and add the CORS headers naming `allowOrigin` to its reply.
        case crossOrigin(allowOrigin: String)
        /// An allowed origin's preflight: answer it with 204 and the CORS headers, and run nothing.
        case preflight(allowOrigin: String)
        case refuse(String)
    }

    /// Decides a request from its method and headers.
    /// - Parameter keysExist: whether API keys are in force (then the host-name check is left to them).
    func verdict(method: HTTPRequest.Method, origin: String?, host: String?, keysExist: Bool, isControlSocket: Bool) -> Verdict {
        if isControlSocket { return .proceed }
        if !keysExist, let host, !names(host: host) {
            return .refuse(
                "Host \(host) is not a name of this daemon; add it with --allowed-host if it is (a web page on another site may be trying to reach a daemon on this machine)"
            )
        }
        guard let origin else { return .proceed }
        let normalized = origin.lowercased()
        if let host, normalized == "http://\(host.lowercased())" || normalized == "https://\(host.lowercased())" {
            return .proceed
        }
        guard allowsAnyOrigin || allowedOrigins.contains(normalized) else {
            return .refuse("requests from web pages of \(origin) are not allowed; allow the origin with --cors-origin")
        }
        let allowOrigin = allowsAnyOrigin ? "*" : origin
        return method == .options ? .preflight(allowOrigin: allowOrigin) : .crossOrigin(allowOrigin: allowOrigin)
    }

    /// Whether a `Host` header (with or without a port) names this daemon.
    func names(host: String) -> Bool {
        var name = Substring(host.lowercased())
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            name = name[name.index(after: name.startIndex)..<close]
        } else if let colon = name.lastIndex(of: ":") {
            name = name[..<colon]
        }
        if name.hasSuffix(".") { name = name.dropLast() }
        if hostNames.contains(String(name)) { return true }
        return acceptsAnyAddress && Self.isAddress(String(name))
    }

    private static func isAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// The machine's name, as `gethostname` gives it (no resolver lookup).
    static func machineName() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? nil : name
    }

    /// The headers every reply to an allowed cross-origin request carries.
    static func corsHeaders(allowOrigin: String, into headers: inout HTTPFields) {
        headers[.accessControlAllowOrigin] = allowOrigin
        headers.append(HTTPField(name: .vary, value: "Origin"))
        headers[.accessControlExposeHeaders] = "X-Request-Id"
    }
}

/// Applies ``OriginPolicy`` before anything else runs: refuses, answers preflights, and adds the CORS headers to
/// the replies of allowed origins (errors included, so that a page can read a 401 and ask for a key).
struct OriginMiddleware: RouterMiddleware {
    typealias Context = DaemonRequestContext
    let policy: OriginPolicy
    let store: Store

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let verdict = policy.verdict(
            method: request.method, origin: request.headers[.origin], host: request.head.authority,
            keysExist: (try? await store.hasActiveAPIKeys()) ?? false, isControlSocket: context.isControlSocket)
        switch verdict {
        case .proceed:
            return try await next(request, context)
        case .refuse(let message):
            return ErrorShape.of(path: request.uri.path).response(APIError(.forbidden, message), requestID: context.id)
        case .preflight(let allowOrigin):
            var response = Response(status: .noContent)
            OriginPolicy.corsHeaders(allowOrigin: allowOrigin, into: &response.headers)
            response.headers[.accessControlAllowMethods] = OriginPolicy.allowedMethods
            response.headers[.accessControlAllowHeaders] = OriginPolicy.allowedHeaders
            response.headers[.accessControlMaxAge] = OriginPolicy.maxAge
            return response
        case .crossOrigin(let allowOrigin):
            var response = try await next(request, context)
            OriginPolicy.corsHeaders(allowOrigin: allowOrigin, into: &response.headers)
            return response
        }
    }
}
