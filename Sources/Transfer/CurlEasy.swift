import CCurl
import FoundationEssentials
import Glibc

/// libcurl's process-wide initialisation, done once before the first handle.
private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

/// A libcurl failure: curl's own message, plus the detail from its error buffer when there is one.
package struct CurlError: Error, CustomStringConvertible, Sendable {
    package var code: Int
    package var message: String

    package init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    init(_ code: CURLcode, detail: String? = nil) {
        self.code = Int(code.rawValue)
        let base = String(cString: curl_easy_strerror(code))
        if let detail, !detail.isEmpty, detail != base {
            self.message = "\(base): \(detail)"
        } else {
            self.message = base
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

    /// The transfer was stopped by our own callback (cancellation).
    package var isAborted: Bool {
        code == Int(CURLE_ABORTED_BY_CALLBACK.rawValue) || code == Int(CURLE_WRITE_ERROR.rawValue)
    }

    package var description: String { message }
}

/// One libcurl easy handle. Not thread-safe: use it from one thread at a time.
package final class CurlEasy {
    let handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

    package init() throws {
        guard curlGlobalInit == CURLE_OK else { throw CurlError(curlGlobalInit) }
        guard let handle = curl_easy_init() else {
            throw CurlError(code: -1, message: "curl_easy_init failed (out of memory?)")
        }
        self.handle = handle
        errorBuffer.withUnsafeMutableBufferPointer { buffer in
            _ = modeld_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
        }
    }

    deinit {
        curl_easy_cleanup(handle)
        if let headerList { curl_slist_free_all(headerList) }
    }

    /// Clears per-request options while keeping the connection cache, so the next request reuses connections.
    package func reset() {
        curl_easy_reset(handle)
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        errorBuffer.withUnsafeMutableBufferPointer { buffer in
            buffer[0] = 0
            _ = modeld_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
        }
    }

    package func set(_ option: CURLoption, _ value: Int) throws {
        try check(modeld_curl_setopt_long(handle, option, value))
    }

    package func set(_ option: CURLoption, offset value: Int64) throws {
        try check(modeld_curl_setopt_off(handle, option, curl_off_t(value)))
    }

    /// Sets a string option. libcurl copies strings, so the Swift string need not outlive the call.
    package func set(_ option: CURLoption, _ value: String) throws {
        try check(value.withCString { modeld_curl_setopt_string(handle, option, $0) })
    }

    package func set(_ option: CURLoption, pointer value: UnsafeMutableRawPointer?) throws {
        try check(modeld_curl_setopt_pointer(handle, option, value))
    }

    /// Replaces the request headers (`Name: value` lines).
    package func setHeaders(_ headers: [String]) throws {
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        for header in headers {
            headerList = curl_slist_append(headerList, header)
        }
        try check(modeld_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList))
    }

    package func setWriteFunction(_ callback: modeld_curl_data_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_data_cb(handle, CURLOPT_WRITEFUNCTION, callback))
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, userData))
    }

    package func setHeaderFunction(_ callback: modeld_curl_data_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_data_cb(handle, CURLOPT_HEADERFUNCTION, callback))
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, userData))
    }

    package func setReadFunction(_ callback: modeld_curl_data_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_data_cb(handle, CURLOPT_READFUNCTION, callback))
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_READDATA, userData))
    }

    package func setProgressFunction(_ callback: modeld_curl_xferinfo_cb, userData: UnsafeMutableRawPointer) throws {
        try check(modeld_curl_setopt_xferinfo_cb(handle, callback))
        try check(modeld_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, userData))
        try set(CURLOPT_NOPROGRESS, 0)
    }

    /// Runs the transfer to completion on the calling thread.
    package func perform() throws {
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else { throw CurlError(code, detail: lastErrorDetail()) }
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

    private func check(_ code: CURLcode) throws {
        guard code == CURLE_OK else { throw CurlError(code) }
    }
}
