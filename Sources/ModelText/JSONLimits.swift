import Foundation

/// The bounds on JSON that comes from outside the process (request bodies, engine and hub replies, a model's
/// files), checked before any decoder sees it. The decoders recurse once per level of nesting, so a body of
/// brackets nested 200,000 deep, a few hundred kilobytes, would end the process on a stack overflow: every
/// reader runs ``check(_:maxDepth:)`` first, which counts nesting in one pass without recursing.
package enum JSONLimits {
    /// The deepest nesting of arrays and objects any reader accepts: 64 levels. Requests, OpenAI tool schemas,
    /// hub replies and model files nest a few levels; deeper input is refused as malformed.
    package static let maxDepth = 64
    /// The largest model file read whole into memory (`tokenizer.json`, `config.json`,
    /// `generation_config.json`, `tokenizer_config.json`, `model.safetensors.index.json`): 64 MiB. The largest
    /// known tokenizer files are about 35 MB.
    package static let maxFileBytes = 64 << 20

    /// Checks that `bytes` nest arrays and objects at most `maxDepth` deep, skipping the contents of strings.
    /// Anything else about the JSON is left to the decoder that follows.
    /// - Throws: ``JSONLimitError`` naming the limit and where it was passed.
    package static func check(_ bytes: some Sequence<UInt8>, maxDepth: Int = maxDepth) throws(JSONLimitError) {
        let result = bytes.withContiguousStorageIfAvailable { depthError(in: $0, maxDepth: maxDepth) }
        if let error = result ?? depthError(in: Array(bytes), maxDepth: maxDepth) { throw error }
    }

    private static func depthError(in bytes: some Collection<UInt8>, maxDepth: Int) -> JSONLimitError? {
        var depth = 0
        var inString = false
        var escaped = false
        var offset = 0
        for byte in bytes {
            defer { offset += 1 }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maxDepth {
                    return JSONLimitError(
                        "JSON nests arrays and objects deeper than the limit of \(maxDepth) levels (at byte \(offset))")
                }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(0, depth - 1)
            default:
                break
            }
        }
        return nil
    }

    /// Foundation's `JSONSerialization.jsonObject(with:options:)` after ``check(_:maxDepth:)``.
    /// - Throws: ``JSONLimitError``, or Foundation's error for malformed JSON.
    package static func jsonObject(with data: Data, options: JSONSerialization.ReadingOptions = []) throws -> Any {
        try check(data)
        return try JSONSerialization.jsonObject(with: data, options: options)
    }

    /// `decoder.decode(type, from: data)` after ``check(_:maxDepth:)``.
    /// - Throws: ``JSONLimitError``, or the decoder's `DecodingError`.
    package static func decode<T: Decodable>(_ type: T.Type, from data: Data, decoder: JSONDecoder = JSONDecoder()) throws -> T {
        try check(data)
        return try decoder.decode(type, from: data)
    }

    /// Reads a model file whole, refusing one larger than `maxBytes` before reading it.
    /// - Throws: ``JSONLimitError`` for a file over the limit; the file system's error when it cannot be read.
    package static func readFile(_ url: URL, maxBytes: Int = maxFileBytes) throws -> Data {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        guard size <= UInt64(maxBytes) else {
            throw JSONLimitError("\(url.lastPathComponent) is \(size) bytes, over the limit of \(maxBytes >> 20) MiB for a model file")
        }
        try handle.seek(toOffset: 0)
        // Read one byte past the limit, in case the file grew since it was measured.
        let data = try handle.read(upToCount: maxBytes + 1) ?? Data()
        guard data.count <= maxBytes else {
            throw JSONLimitError("\(url.lastPathComponent) is larger than the limit of \(maxBytes >> 20) MiB for a model file")
        }
        return data
    }
}

/// JSON (or a file holding it) over one of the ``JSONLimits``; the message names the limit.
package struct JSONLimitError: Error, CustomStringConvertible, Equatable {
    package var message: String

    package init(_ message: String) { self.message = message }

    package var description: String { message }
}
