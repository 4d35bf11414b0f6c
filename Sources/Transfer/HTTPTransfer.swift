import CCurl
import FoundationEssentials
import Glibc

/// An HTTP request for libcurl.
package struct HTTPRequest: Sendable {
    package var method: String
    package var url: String
    package var headers: [(String, String)]
    package var body: Data?
    /// Upload this file as the body, read as it is sent (for bodies too large to hold in memory).
    package var bodyFile: String?
    /// Connect over this unix socket instead of TCP (the URL's host is then only the Host header).
    package var unixSocketPath: String?
    /// Give up when no byte moves for this long (stall detection, not a total time cap).
    package var stallTimeout: Duration

    package init(
        method: String = "GET", url: String, headers: [(String, String)] = [], body: Data? = nil, bodyFile: String? = nil,
        unixSocketPath: String? = nil, stallTimeout: Duration = .seconds(30)
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.bodyFile = bodyFile
        self.unixSocketPath = unixSocketPath
        self.stallTimeout = stallTimeout
    }
}

/// The status line and headers of a response.
package struct HTTPResponseHead: Sendable {
    package var status: Int
    /// Header names lower-cased; a repeated header keeps its last value.
    package var headers: [String: String]

    package init(status: Int, headers: [String: String]) {
        self.status = status
        self.headers = headers
    }
}

/// A response with its whole body.
package struct HTTPResponse: Sendable {
    package var head: HTTPResponseHead
    package var body: Data
    package var status: Int { head.status }
}

/// Blocking HTTP over one reused libcurl handle.
///
/// Calls run on the caller's thread; async wrappers hop to a dedicated thread so that libcurl never
/// blocks Swift's cooperative pool.
package final class HTTPTransfer: @unchecked Sendable {
    private let lock = ThreadCondition()
    private let easy: CurlEasy
    /// A PEM file of CA certificates that verifies `https://` servers instead of the default bundle.
    private let caBundle: String?

    /// - Parameter caBundle: CA certificates (PEM) to verify servers with, as `curl --cacert` does; nil for
    ///   libcurl's default bundle.
    package init(caBundle: String? = nil) throws {
        easy = try CurlEasy()
        self.caBundle = caBundle
    }

    /// Sends a request and collects the whole response body.
    package func perform(_ request: HTTPRequest) throws -> HTTPResponse {
        var body = Data()
        let head = try stream(request) { chunk in
            body.append(contentsOf: chunk)
            return true
        }
        return HTTPResponse(head: head, body: body)
    }

    /// Sends a request, handing each body chunk to `onData` as it arrives; `onData` returns false to stop.
    /// - Returns: the response head.
    /// - Throws: ``CurlError`` on a transport failure (an abort by `onData` returns normally).
    /// - Parameter onHead: called once with the status and headers, before the first body chunk (or at the
    ///   end when there is no body); the response head is also returned.
    package func stream(
        _ request: HTTPRequest, onHead: ((HTTPResponseHead) -> Void)? = nil, onData: (UnsafeRawBufferPointer) -> Bool
    ) throws -> HTTPResponseHead {
        lock.lock()
        defer { lock.unlock() }
        easy.reset()
        return try withoutActuallyEscaping(onData) { onData in
            let easy = self.easy
            let context = TransferContext(onData: onData, body: request.body ?? Data())
            var bodyFileSize: Int64 = 0
            if let path = request.bodyFile {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                var info = stat()
                guard fd >= 0, fstat(fd, &info) == 0 else {
                    let message = String(cString: strerror(errno))
                    if fd >= 0 { close(fd) }
                    throw CurlError(code: -1, message: "cannot read \(path): \(message)")
                }
                context.bodyFD = fd
                bodyFileSize = Int64(info.st_size)
            }
            defer { if context.bodyFD >= 0 { close(context.bodyFD) } }
            if let onHead {
                context.onHead = { headers in onHead(HTTPResponseHead(status: easy.responseCode(), headers: headers)) }
            }
            let unmanaged = Unmanaged.passRetained(context)
            defer { unmanaged.release() }
            let pointer = unmanaged.toOpaque()

            try easy.set(CURLOPT_URL, request.url)
            if let caBundle { try easy.set(CURLOPT_CAINFO, caBundle) }
            try easy.set(CURLOPT_NOSIGNAL, 1)
            try easy.set(CURLOPT_FOLLOWLOCATION, 0)
            try easy.set(CURLOPT_ACCEPT_ENCODING, "identity")
            let stallSeconds = max(1, Int(request.stallTimeout.components.seconds))
            try easy.set(CURLOPT_LOW_SPEED_LIMIT, 1)
            try easy.set(CURLOPT_LOW_SPEED_TIME, stallSeconds)
            try easy.set(CURLOPT_CONNECTTIMEOUT, min(stallSeconds, 30))
            if let socket = request.unixSocketPath { try easy.setUnixSocketPath(socket) }
            try easy.setHeaders(request.headers.map { "\($0.0): \($0.1)" } + ["Expect:"])
            try easy.setWriteFunction(transferWrite, userData: pointer)
            try easy.setHeaderFunction(transferHeader, userData: pointer)

            switch request.method {
            case "GET": try easy.set(CURLOPT_HTTPGET, 1)
            case "HEAD": try easy.set(CURLOPT_NOBODY, 1)
            default:
                try easy.set(CURLOPT_CUSTOMREQUEST, request.method)
            }
            if request.body != nil || request.bodyFile != nil {
                try easy.set(CURLOPT_UPLOAD, 1)
                try easy.set(CURLOPT_INFILESIZE_LARGE, offset: request.bodyFile != nil ? bodyFileSize : Int64(context.body.count))
                try easy.setReadFunction(transferRead, userData: pointer)
                if request.method == "POST" {
                    try easy.set(CURLOPT_CUSTOMREQUEST, "POST")
                }
            }
            do {
                try easy.perform()
            } catch let error as CurlError where error.isAborted && context.stoppedByCaller {
                // The caller asked to stop: not a failure.
            }
            let head = HTTPResponseHead(status: easy.responseCode(), headers: context.headers)
            if !context.headSent, let onHead = context.onHead {
                context.headSent = true
                onHead(context.headers)
            }
            return head
        }
    }

    /// ``perform(_:)`` on a dedicated thread.
    package func perform(_ request: HTTPRequest) async throws -> HTTPResponse {
        try await onThread { try self.perform(request) }
    }
}

private final class TransferContext {
    let onData: (UnsafeRawBufferPointer) -> Bool
    let body: Data
    var bodyOffset = 0
    var headers: [String: String] = [:]
    var stoppedByCaller = false
    var onHead: (([String: String]) -> Void)?
    var headSent = false
    /// The file uploaded as the body, when there is one (else `body` is sent).
    var bodyFD: Int32 = -1

    init(onData: @escaping (UnsafeRawBufferPointer) -> Bool, body: Data) {
        self.onData = onData
        self.body = body
    }
}

private func transferWrite(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user else { return 0 }
    let context = Unmanaged<TransferContext>.fromOpaque(user).takeUnretainedValue()
    let length = size * count
    if !context.headSent, let onHead = context.onHead {
        context.headSent = true
        onHead(context.headers)
    }
    let keepGoing = context.onData(UnsafeRawBufferPointer(start: data, count: length))
    if !keepGoing {
        context.stoppedByCaller = true
        return 0
    }
    return length
}

private func transferHeader(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user, let data else { return 0 }
    let context = Unmanaged<TransferContext>.fromOpaque(user).takeUnretainedValue()
    let length = size * count
    collectHeaderLine(data, count: length, into: &context.headers)
    return length
}

private func transferRead(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user, let buffer else { return 0 }
    let context = Unmanaged<TransferContext>.fromOpaque(user).takeUnretainedValue()
    if context.bodyFD >= 0 {
        while true {
            let got = read(context.bodyFD, buffer, size * count)
            if got >= 0 { return got }
            if errno != EINTR { return Int(CURL_READFUNC_ABORT) }
        }
    }
    let remaining = context.body.count - context.bodyOffset
    let length = min(remaining, size * count)
    guard length > 0 else { return 0 }
    context.body.withUnsafeBytes { bytes in
        UnsafeMutableRawPointer(buffer).copyMemory(from: bytes.baseAddress! + context.bodyOffset, byteCount: length)
    }
    context.bodyOffset += length
    return length
}
