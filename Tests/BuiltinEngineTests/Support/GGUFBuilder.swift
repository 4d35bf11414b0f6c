import Foundation

/// Writes GGUF files byte by byte (docs/design/gguf.md), so tests can build valid files and break them.
struct GGUFBuilder {
    enum Value {
        case u32(UInt32), i32(Int32), u64(UInt64), f32(Float), bool(Bool), string(String)
        case strings([String]), i32s([Int32])
        /// Any bytes after a value type: for malformed values.
        case raw(type: UInt32, bytes: [UInt8])
    }

    struct Tensor {
        var name: String
        var dimensions: [UInt64]
        var type: UInt32
        var data: [UInt8]
        /// Overrides the computed offset (to write a bad one).
        var offset: UInt64?
    }

    var magic = Array("GGUF".utf8)
    var version: UInt32 = 3
    var metadata: [(String, Value)] = []
    var tensors: [Tensor] = []
    var alignment = 32

    func bytes() -> [UInt8] {
        var out: [UInt8] = magic
        func int<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ text: String) {
            int(UInt64(text.utf8.count))
            out.append(contentsOf: text.utf8)
        }
        int(version)
        int(UInt64(tensors.count))
        int(UInt64(metadata.count))
        for (key, value) in metadata {
            string(key)
            switch value {
            case .u32(let v):
                int(UInt32(4))
                int(v)
            case .i32(let v):
                int(UInt32(5))
                int(v)
            case .u64(let v):
                int(UInt32(10))
                int(v)
            case .f32(let v):
                int(UInt32(6))
                int(v.bitPattern)
            case .bool(let v):
                int(UInt32(7))
                out.append(v ? 1 : 0)
            case .string(let v):
                int(UInt32(8))
                string(v)
            case .strings(let v):
                int(UInt32(9))
                int(UInt32(8))
                int(UInt64(v.count))
                v.forEach(string)
            case .i32s(let v):
                int(UInt32(9))
                int(UInt32(5))
                int(UInt64(v.count))
                v.forEach { int($0) }
            case .raw(let type, let bytes):
                int(type)
                out.append(contentsOf: bytes)
            }
        }
        var offsets: [UInt64] = []
        var next: UInt64 = 0
        for tensor in tensors {
            offsets.append(next)
            next += UInt64(tensor.data.count + alignment - 1) / UInt64(alignment) * UInt64(alignment)
        }
        for (tensor, offset) in zip(tensors, offsets) {
            string(tensor.name)
            int(UInt32(tensor.dimensions.count))
            tensor.dimensions.forEach { int($0) }
            int(tensor.type)
            int(tensor.offset ?? offset)
        }
        while out.count % alignment != 0 { out.append(0) }
        let start = out.count
        for (tensor, offset) in zip(tensors, offsets) {
            while out.count < start + Int(offset) { out.append(0) }
            out.append(contentsOf: tensor.data)
        }
        return out
    }

    /// Writes the file to a new temporary path.
    func write() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString).gguf")
        try Data(bytes()).write(to: url)
        return url
    }
}

/// llama.cpp's source tree as `scripts/build-llamacpp.sh` extracts it (under `.build/llama.cpp/src-VERSION`):
/// its vocabulary GGUF files and the converter.
enum LlamaCppSource {
    static let packageRoot = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../..").standardized

    /// The extracted source, or a failure that says how to get it.
    static func directory() throws -> URL {
        let root = packageRoot.appending(path: ".build/llama.cpp")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        guard let name = names.filter({ $0.hasPrefix("src-") }).sorted().last else {
            throw FixtureMissing("llama.cpp's source is not under \(root.path): run scripts/build-llamacpp.sh")
        }
        return root.appending(path: name)
    }

    static func vocabulary(_ name: String) throws -> URL {
        try directory().appending(path: "models/ggml-vocab-\(name).gguf")
    }
}

struct FixtureMissing: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs one of the repository's Python scripts (`scripts/NAME`) and fails with its standard error.
func runScript(_ name: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(filePath: "/usr/bin/env")
    process.arguments = ["python3", LlamaCppSource.packageRoot.appending(path: "scripts/\(name)").path] + arguments
    let errors = FileManager.default.temporaryDirectory.appending(path: "script-err-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errors) }
    process.standardError = try FileHandle(forWritingTo: errors)
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw FixtureMissing(
            "scripts/\(name) \(arguments.joined(separator: " ")) failed: \((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
    }
}
