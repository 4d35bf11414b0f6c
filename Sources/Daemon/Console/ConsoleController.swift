import Foundation
import HTTPTypes
import Hummingbird
import ModeldAPI
import NIOCore

/// One file of the web console, decoded once from what `scripts/embed-console.py` compiled into the binary.
struct ConsoleAsset: Sendable {
    let bytes: ByteBuffer
    /// The same bytes gzip-compressed (at build time), for clients that accept it.
    let gzip: ByteBuffer
    /// A strong ETag: the SHA-256 of the bytes, quoted.
    let etag: String
    let contentType: String
}

/// The web console's files (`console/` in the repository), compiled into modeld so that an air-gapped host gets the
/// whole console with no file read at run time and no request leaving the host.
enum ConsoleAssets {
    /// Every file by its path under `console/` (`index.html`, `views/runs.js`).
    static let files: [String: ConsoleAsset] = encoded.reduce(into: [:]) { files, entry in
        guard let bytes = Data(base64Encoded: entry.value.bytes), let gzip = Data(base64Encoded: entry.value.gzip) else {
            preconditionFailure("ConsoleAssets+files.swift holds invalid base64 for \(entry.key); run scripts/embed-console.py")
        }
        files[entry.key] = ConsoleAsset(
            bytes: ByteBuffer(bytes: bytes), gzip: ByteBuffer(bytes: gzip), etag: "\"\(entry.value.sha256)\"",
            contentType: contentType(of: entry.key))
    }

    /// The content type of a console file, from its extension.
    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }
}

/// The web console: `GET /` (the page for a browser, a one-line answer for anything else) and its files under
/// `/ui/`. Public (the page asks for a key when the API answers 401), but the origin and host checks apply.
///
/// Every file carries a strong `ETag` (304 on a matching `If-None-Match`), `Cache-Control: no-cache` (a browser
/// revalidates, so a new daemon's console is seen at once), gzip when accepted, and a `Content-Security-Policy` that
/// allows nothing but the daemon's own origin and no inline script.
struct ConsoleController {
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    /// What `GET /` answers a client that does not ask for HTML.
    static let plainAnswer = "modeld is running\n"

    /// Whether a path is the console's, served without a key.
    static func isPublic(path: String) -> Bool { path == "/" || path.hasPrefix("/ui/") }

    func addRoutes(to router: Router<DaemonRequestContext>) {
        router.get("/") { request, _ in Self.root(request) }
        // The headers GET would send, `Content-Length` included, without the body.
        router.head("/") { request, _ in Self.root(request).createHeadResponse() }
        router.get("ui/:file") { request, context in try Self.file(try context.parameters.require("file"), request: request) }
        router.get("ui/views/:file") { request, context in
            try Self.file("views/" + (try context.parameters.require("file")), request: request)
        }
    }

    /// `/`: the console's page when the client accepts HTML (a browser), else a line of plain text.
    static func root(_ request: Request) -> Response {
        let accept = request.headers[.accept]?.lowercased() ?? ""
        guard accept.contains("text/html"), let page = ConsoleAssets.files["index.html"] else {
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .vary: "Accept"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: plainAnswer)))
        }
        var response = serve(page, request: request)
        response.headers[.vary] = "Accept, Accept-Encoding"
        return response
    }

    /// `/ui/{file}`: a console file, or 404.
    static func file(_ name: String, request: Request) throws -> Response {
        guard name != "index.html", let asset = ConsoleAssets.files[name] else {
            throw APIError.notFound("no console file \(name)")
        }
        return serve(asset, request: request)
    }

    static func serve(_ asset: ConsoleAsset, request: Request) -> Response {
        var headers: HTTPFields = [
            .eTag: asset.etag, .cacheControl: "no-cache", .vary: "Accept-Encoding",
            .contentSecurityPolicy: contentSecurityPolicy, .xContentTypeOptions: "nosniff",
        ]
        if let tags = request.headers[.ifNoneMatch], matches(tags, etag: asset.etag) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = asset.contentType
        if acceptsGzip(request.headers[.acceptEncoding]) {
            headers[.contentEncoding] = "gzip"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: asset.gzip))
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: asset.bytes))
    }

    /// Whether an `If-None-Match` list names the ETag (`*`, or the tag, weak or strong: the weak comparison RFC 9110
    /// asks for here).
    static func matches(_ header: String, etag: String) -> Bool {
        header.split(separator: ",").contains { item in
            let tag = item.trimmingCharacters(in: .whitespaces)
            return tag == "*" || tag == etag || tag == "W/" + etag
        }
    }

    /// Whether an `Accept-Encoding` header accepts gzip (listed without `q=0`).
    static func acceptsGzip(_ header: String?) -> Bool {
        guard let header else { return false }
        return header.lowercased().split(separator: ",").contains { item in
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.first == "gzip" || parts.first == "*" else { return false }
            let quality = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            return quality > 0
        }
    }
}
