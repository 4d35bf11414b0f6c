import CCurl
import FoundationEssentials
import Glibc

/// libcurl's process-wide initialisation, done once before the first handle.
private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

/// A libcurl failure, as one sentence that names the host and says what went wrong
/// (`cannot resolve host hub.example (DNS lookup failed)`), with libcurl's own detail where it adds to it.
package struct CurlError: Error, CustomStringConvertible, Sendable {
    package var code: Int
    package var message: String

    package init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    /// A failed transfer.
    /// - Parameters:
    ///   - url: the URL asked for (its host and port go into the message; nothing else of it does).
    ///   - detail: libcurl's error buffer.
    ///   - osError: the `errno` of a failed connect (`CURLINFO_OS_ERRNO`), 0 when there is none.
    ///   - unixSocket: the unix socket connected to instead of the URL's host and port, if any.
    init(_ code: CURLcode, url: String?, unixSocket: String?, detail: String, osError: Int32) {
        self.code = Int(code.rawValue)
        var address = url.flatMap(HostAndPort.init)
        if let unixSocket { address = HostAndPort(host: address?.host ?? "localhost", port: "", unixSocket: unixSocket) }
        self.message = Self.describe(code, address: address, detail: detail, osError: osError)
    }

    /// An option libcurl refused (a mistake of ours or a libcurl built without a feature, not a network failure).
    init(option: CURLoption, _ code: CURLcode) {
        self.code = Int(code.rawValue)
        self.message = "libcurl refused option \(option.rawValue): \(String(cString: curl_easy_strerror(code)))"
    }

    /// libcurl's process-wide initialisation failed.
    init(initialisation code: CURLcode) {
        self.code = Int(code.rawValue)
        self.message = "cannot initialise libcurl: \(String(cString: curl_easy_strerror(code)))"
    }

    private static func describe(_ code: CURLcode, address: HostAndPort?, detail: String, osError: Int32) -> String {
        let reason = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let host = address?.host ?? "the server"
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST:
            return "cannot resolve host \(host) (DNS lookup failed)"
        case CURLE_COULDNT_RESOLVE_PROXY:
            return "cannot resolve the proxy for \(host) (DNS lookup failed): \(reason)"
        case CURLE_COULDNT_CONNECT:
            let cause = osError != 0 ? String(cString: strerror(osError)) : reason
            if let socket = address?.unixSocket { return "cannot connect to unix socket \(socket): \(cause)" }
            let target = address.map { "\($0.host) port \($0.port)" } ?? host
            // libcurl's detail names the proxy when it was the proxy that could not be reached.
            let proxyNote = detail.contains(target) ? "" : " (\(reason))"
            return "cannot connect to \(target): \(cause)\(proxyNote)"
        case CURLE_OPERATION_TIMEDOUT:
            return "timed out talking to \(host): \(reason)"
        case CURLE_PEER_FAILED_VERIFICATION:
            return "the TLS certificate of \(host) is not trusted: \(reason)"
        case CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CRL_BADFILE:
            return "cannot use the CA certificates to verify \(host): \(reason)"
        case CURLE_SSL_CONNECT_ERROR:
            return "TLS handshake with \(host) failed: \(reason)"
        case CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED,
            CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
            CURLE_SSL_SHUTDOWN_FAILED, CURLE_USE_SSL_FAILED, CURLE_SSL_CLIENTCERT:
            return "TLS error with \(host): \(reason)"
        case CURLE_GOT_NOTHING:
            return "\(host) closed the connection without a reply"
        case CURLE_PARTIAL_FILE:
            return "\(host) closed the connection before the whole reply arrived: \(reason)"
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR:
            return "the connection to \(host) broke: \(reason)"
        case CURLE_HTTP2, CURLE_HTTP2_STREAM:
            return "HTTP/2 error with \(host): \(reason)"
        case CURLE_WEIRD_SERVER_REPLY:
            return "\(host) sent a reply that is not HTTP: \(reason)"
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return "cannot use the URL for \(host): \(reason)"
        case CURLE_PROXY:
            return "the proxy for \(host) failed: \(reason)"
        default:
            let base = String(cString: curl_easy_strerror(code))
            return reason == base ? "\(base) (talking to \(host))" : "\(base) (talking to \(host)): \(reason)"
        }
    }

    /// Whether retrying the same request can succeed (connection trouble, time-outs, a cut body).
    package var isTransient: Bool {
        let transient: [CURLcode] = [
            CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_OPERATION_TIMEDOUT,
            CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM,
            CURLE_SSL_CONNECT_ERROR,
        ]
        return transient.contains { Int($0.rawValue) == code }
    }

    /// The server's TLS certificate did not verify against the trusted CA certificates (retrying cannot help).
    package var isUntrustedCertificate: Bool {
        code == Int(CURLE_PEER_FAILED_VERIFICATION.rawValue)
    }

    /// The transfer was stopped by our own callback (cancellation).
    package var isAborted: Bool {
        code == Int(CURLE_ABORTED_BY_CALLBACK.rawValue) || code == Int(CURLE_WRITE_ERROR.rawValue)
    }

    package var description: String { message }
}

/// The host and port of a URL, read by libcurl's own URL parser (as the transfer read them).
private struct HostAndPort {
    var host: String
    var port: String
    /// The unix socket the transfer used instead of a TCP connection to `host`.
    var unixSocket: String?

    init(host: String, port: String, unixSocket: String?) {
        self.host = host
        self.port = port
        self.unixSocket = unixSocket
    }

    init?(_ url: String) {
        guard let parsed = curl_url() else { return nil }
        defer { curl_url_cleanup(parsed) }
        guard curl_url_set(parsed, CURLUPART_URL, url, 0) == CURLUE_OK,
            let host = Self.part(parsed, CURLUPART_HOST, flags: 0),
            let port = Self.part(parsed, CURLUPART_PORT, flags: UInt32(CURLU_DEFAULT_PORT))
        else { return nil }
        self.host = host
        self.port = port
    }

    private static func part(_ url: OpaquePointer, _ part: CURLUPart, flags: UInt32) -> String? {
        var pointer: UnsafeMutablePointer<CChar>?
        guard curl_url_get(url, part, &pointer, flags) == CURLUE_OK, let pointer else { return nil }
        defer { curl_free(pointer) }
        return String(cString: pointer)
    }
}

/// One libcurl easy handle. Not thread-safe: use it from one thread at a time.
package final class CurlEasy {
    private(set) var handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// Set by ``setUnixSocketPath(_:)`` for error messages; cleared by ``reset()``.
    private var unixSocketPath: String?
    private var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

    package init() throws {
        guard curlGlobalInit == CURLE_OK else { throw CurlError(initialisation: curlGlobalInit) }
        handle = try Self.makeHandle()
        errorBuffer.withUnsafeMutableBufferPointer { buffer in
            _ = modeld_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
        }
    }

    private static func makeHandle() throws -> UnsafeMutableRawPointer {
        guard let handle = curl_easy_init() else {
            throw CurlError(code: -1, message: "curl_easy_init failed (out of memory?)")
        }
        return handle
    }

    deinit {
        curl_easy_cleanup(handle)
        if let headerList { curl_slist_free_all(headerList) }
    }

    /// Clears per-request options while keeping the connection cache, so the next request reuses connections.
    ///
    /// A transfer that failed before it had a connection (a failed DNS lookup of the host or the proxy) leaves
    /// libcurl 7.88 holding its receive buffer, and while it does, libcurl refuses `CURLOPT_BUFFERSIZE` with
    /// `CURLE_BAD_FUNCTION_ARGUMENT`: the retry of such a transfer failed with "A libcurl function was given a
    /// bad argument" instead of trying again. Setting the option here finds such a handle, and it is replaced
    /// by a fresh one (it holds no live connection worth keeping).
    package func reset() {
        curl_easy_reset(handle)
        if modeld_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, Int(CURL_MAX_WRITE_SIZE)) == CURLE_BAD_FUNCTION_ARGUMENT,
            let fresh = try? Self.makeHandle()
        {
            curl_easy_cleanup(handle)
            handle = fresh
        }
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        unixSocketPath = nil
        errorBuffer.withUnsafeMutableBufferPointer { buffer in
            buffer[0] = 0
            _ = modeld_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
        }
    }

    package func set(_ option: CURLoption, _ value: Int) throws {
        try check(modeld_curl_setopt_long(handle, option, value), option)
    }

    package func set(_ option: CURLoption, offset value: Int64) throws {
        try check(modeld_curl_setopt_off(handle, option, curl_off_t(value)), option)
    }

    /// Sets a string option. libcurl copies strings, so the Swift string need not outlive the call.
    package func set(_ option: CURLoption, _ value: String) throws {
        try check(value.withCString { modeld_curl_setopt_string(handle, option, $0) }, option)
    }

    package func set(_ option: CURLoption, pointer value: UnsafeMutableRawPointer?) throws {
        try check(modeld_curl_setopt_pointer(handle, option, value), option)
    }

    /// Connects over this unix socket instead of TCP (the URL's host is then only the Host header).
    package func setUnixSocketPath(_ path: String) throws {
        try set(CURLOPT_UNIX_SOCKET_PATH, path)
        unixSocketPath = path
    }

    /// Replaces the request headers (`Name: value` lines).
    package func setHeaders(_ headers: [String]) throws {
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        for header in headers {
            headerList = curl_slist_append(headerList, header)
        }
        try check(modeld_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList), CURLOPT_HTTPHEADER)
    }

    package func setWriteFunction(_ callback: modeld_curl_data_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_data_cb(handle, CURLOPT_WRITEFUNCTION, callback), CURLOPT_WRITEFUNCTION)
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, userData), CURLOPT_WRITEDATA)
    }

    package func setHeaderFunction(_ callback: modeld_curl_data_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_data_cb(handle, CURLOPT_HEADERFUNCTION, callback), CURLOPT_HEADERFUNCTION)
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, userData), CURLOPT_HEADERDATA)
    }

    package func setReadFunction(_ callback: modeld_curl_data_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_data_cb(handle, CURLOPT_READFUNCTION, callback), CURLOPT_READFUNCTION)
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_READDATA, userData), CURLOPT_READDATA)
    }

    package func setProgressFunction(_ callback: modeld_curl_xferinfo_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_xferinfo_cb(handle, callback), CURLOPT_XFERINFOFUNCTION)
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, userData), CURLOPT_XFERINFODATA)
        try set(CURLOPT_NOPROGRESS, 0)
    }

    /// Runs the transfer to completion on the calling thread.
    package func perform() throws {
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else {
            var osError = 0
            _ = modeld_curl_getinfo_long(handle, CURLINFO_OS_ERRNO, &osError)
            throw CurlError(
                code, url: effectiveURL(), unixSocket: unixSocketPath, detail: lastErrorDetail(),
                osError: Int32(truncatingIfNeeded: osError))
        }
    }

    package func responseCode() -> Int {
        var code = 0
        _ = modeld_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    package func effectiveURL() -> String? {
        var pointer: UnsafeMutablePointer<CChar>?
        guard modeld_curl_getinfo_string(handle, CURLINFO_EFFECTIVE_URL, &pointer) == CURLE_OK, let pointer else { return nil }
        return String(cString: pointer)
    }

    /// The HTTP version actually used (1.1 = 2, 2 = 3, as `CURL_HTTP_VERSION_*`).
    package func httpVersion() -> Int {
        var version = 0
        _ = modeld_curl_getinfo_long(handle, CURLINFO_HTTP_VERSION, &version)
        return version
    }

    /// How many new connections the last transfer opened (0 when it reused one).
    package func newConnections() -> Int {
        var count = 0
        _ = modeld_curl_getinfo_long(handle, CURLINFO_NUM_CONNECTS, &count)
        return count
    }

    func lastErrorDetail() -> String {
        errorBuffer.withUnsafeBufferPointer { buffer in
            String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    private func check(_ code: CURLcode, _ option: CURLoption) throws {
        guard code == CURLE_OK else { throw CurlError(option: option, code) }
    }
}
