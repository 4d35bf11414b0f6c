import Foundation
import Testing

@testable import ModelText

@Suite("GGUF header validation")
struct GGUFReaderTests {
    /// A small valid file: metadata of several types, an F32 matrix and a Q8_0 row.
    static func valid() -> GGUFBuilder {
        var builder = GGUFBuilder()
        builder.metadata = [
            ("general.architecture", .string("qwen2")),
            ("general.alignment", .u32(64)),
            ("qwen2.block_count", .u32(2)),
            ("qwen2.rope.freq_base", .f32(1_000_000)),
            ("flag", .bool(true)),
            ("tokenizer.ggml.tokens", .strings(["a", "b", "ĠĠ"])),
            ("tokenizer.ggml.token_type", .i32s([1, 1, 3])),
        ]
        builder.alignment = 64
        let floats = (0..<6).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) }
        builder.tensors = [
            .init(name: "m", dimensions: [3, 2], type: 0, data: floats),
            .init(name: "q", dimensions: [32], type: 8, data: [0, 0x3C] + (0..<32).map { UInt8($0) }),
        ]
        return builder
    }

    private func expectInvalid(_ builder: GGUFBuilder, mentioning words: String...) {
        expectInvalid(bytes: builder.bytes(), mentioning: words)
    }

    private func expectInvalid(bytes: [UInt8], mentioning words: [String]) {
        do {
            _ = try bytes.withUnsafeBytes { try GGUFFile.parse($0, fileName: "t.gguf") }
            Issue.record("the file was accepted")
        } catch let error as ModelError {
            #expect(error.code == .invalidGGUF)
            for word in words { #expect(error.message.contains(word), "\(error.message)") }
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func validFileIsReadInPlace() throws {
        let url = try Self.valid().write()
        defer { try? FileManager.default.removeItem(at: url) }
        let file = try GGUFFile(url: url)
        #expect(file.version == 3)
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(file.keys.first == "general.architecture")
        #expect(file.metadata["qwen2.block_count"] == .unsigned(2))
        #expect(file.metadata["qwen2.rope.freq_base"]?.double == 1_000_000)
        #expect(file.metadata["flag"] == .bool(true))
        #expect(file.metadata["tokenizer.ggml.tokens"]?.array?.compactMap(\.string) == ["a", "b", "ĠĠ"])
        let m = try #require(file.tensorInfo(named: "m"))
        #expect(m.dimensions == [3, 2])
        #expect(m.shape == [2, 3])
        #expect(m.type == .f32)
        let data = file.data(of: m)
        #expect((0..<6).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } == [0, 1, 2, 3, 4, 5])
        let q = try #require(file.tensorInfo(named: "q"))
        #expect(q.offset == 64)
        #expect(q.byteCount == 34)
        #expect(file.data(of: q).last == 31)
        #expect(file.tensorInfo(named: "missing") == nil)
    }

    @Test func everyTruncationIsAnErrorNotACrash() throws {
        let bytes = Self.valid().bytes()
        for length in 0..<bytes.count where length < 400 || length % 7 == 0 {
            // Only the tensor data can be cut without the header noticing: past the last info, the data
            // section check must catch it.
            expectInvalid(bytes: Array(bytes[0..<length]), mentioning: [])
        }
    }

    @Test func magicAndVersion() {
        var builder = Self.valid()
        builder.magic = Array("GGUG".utf8)
        expectInvalid(builder, mentioning: "magic")
        builder = Self.valid()
        builder.version = 1
        expectInvalid(builder, mentioning: "version 1")
        builder.version = 4
        expectInvalid(builder, mentioning: "version 4")
    }

    @Test func countsBeyondTheFile() {
        var bytes = Self.valid().bytes()
        bytes.replaceSubrange(8..<16, with: withUnsafeBytes(of: UInt64.max.littleEndian, Array.init))
        expectInvalid(bytes: bytes, mentioning: ["tensors"])
        bytes = Self.valid().bytes()
        bytes.replaceSubrange(16..<24, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian, Array.init))
        expectInvalid(bytes: bytes, mentioning: ["metadata"])
    }

    @Test func stringsAndArraysPastTheEnd() {
        var builder = Self.valid()
        builder.metadata.append(("long", .raw(type: 8, bytes: withUnsafeBytes(of: UInt64(1 << 50).littleEndian, Array.init))))
        expectInvalid(builder, mentioning: "long", "past the end")
        builder = Self.valid()
        let header: [UInt8] = withUnsafeBytes(of: UInt32(4).littleEndian, Array.init) + withUnsafeBytes(of: UInt64(1 << 60).littleEndian, Array.init)
        builder.metadata.append(("many", .raw(type: 9, bytes: header)))
        expectInvalid(builder, mentioning: "many", "elements")
    }

    @Test func malformedValues() {
        var builder = Self.valid()
        builder.metadata.append(("odd", .raw(type: 13, bytes: [])))
        expectInvalid(builder, mentioning: "odd", "unknown value type 13")
        builder = Self.valid()
        builder.metadata.append(
            (
                "nested",
                .raw(
                    type: 9, bytes: withUnsafeBytes(of: UInt32(9).littleEndian, Array.init) + withUnsafeBytes(of: UInt64(1).littleEndian, Array.init))
            ))
        expectInvalid(builder, mentioning: "nested", "array of arrays")
        builder = Self.valid()
        builder.metadata.append(("yes", .raw(type: 7, bytes: [2])))
        expectInvalid(builder, mentioning: "yes", "bool")
        builder = Self.valid()
        builder.metadata.append(("general.architecture", .string("llama")))
        expectInvalid(builder, mentioning: "general.architecture", "twice")
        builder = Self.valid()
        builder.metadata.append(("bad", .raw(type: 8, bytes: withUnsafeBytes(of: UInt64(2).littleEndian, Array.init) + [0xC3, 0x28])))
        expectInvalid(builder, mentioning: "bad", "UTF-8")
    }

    @Test func alignment() {
        var builder = Self.valid()
        builder.metadata[1] = ("general.alignment", .u32(48))
        expectInvalid(builder, mentioning: "general.alignment")
        builder.metadata[1] = ("general.alignment", .string("32"))
        expectInvalid(builder, mentioning: "general.alignment")
        builder = Self.valid()
        builder.tensors[1].offset = 40
        expectInvalid(builder, mentioning: "q", "offset 40", "alignment 64")
    }

    @Test func tensorInfos() {
        var builder = Self.valid()
        builder.tensors[0].dimensions = [3, 1, 1, 1, 2]
        expectInvalid(builder, mentioning: "m", "5 dimensions")
        builder = Self.valid()
        builder.tensors[0].dimensions = [UInt64(1) << 40, UInt64(1) << 40]
        expectInvalid(builder, mentioning: "m", "too many elements")
        builder = Self.valid()
        builder.tensors[0].type = 99
        expectInvalid(builder, mentioning: "m", "unknown type 99")
        builder = Self.valid()
        builder.tensors[1].dimensions = [16]
        expectInvalid(builder, mentioning: "q", "Q8_0", "32-element blocks")
        builder = Self.valid()
        builder.tensors[1].name = "m"
        expectInvalid(builder, mentioning: "m", "twice")
        builder = Self.valid()
        builder.tensors[1].dimensions = [64]
        expectInvalid(builder, mentioning: "q", "past the end")
        builder = Self.valid()
        builder.tensors[1].offset = 0
        expectInvalid(builder, mentioning: "overlap")
    }

    @Test func unsupportedTypesAreNamed() throws {
        var builder = Self.valid()
        builder.tensors[1].type = 16  // IQ2_XXS: known, so the file is valid; the engine cannot use it.
        builder.tensors[1].dimensions = [256]
        builder.tensors[1].data = [UInt8](repeating: 0, count: 66)
        let url = try builder.write()
        defer { try? FileManager.default.removeItem(at: url) }
        let file = try GGUFFile(url: url)
        let info = try #require(file.tensorInfo(named: "q"))
        #expect(info.type.description == "IQ2_XXS")
        #expect(!info.type.isSupported)
        #expect(throws: ModelError.self) { try Dequantize.floats(info, in: file) }
        do {
            _ = try Dequantize.floats(info, in: file)
        } catch let error as ModelError {
            #expect(error.message.contains("IQ2_XXS"))
        }
    }

    @Test func unsupportedArchitectureIsNamed() throws {
        var builder = Self.valid()
        builder.metadata[0] = ("general.architecture", .string("gemma2"))
        let url = try builder.write()
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try ModelConfig(gguf: GGUFFile(url: url))
            Issue.record("gemma2 was accepted")
        } catch let error as ModelError {
            #expect(error.code == .unsupportedArchitecture)
            #expect(error.message.contains("gemma2"))
            #expect(error.message.contains("qwen2") && error.message.contains("phi3") && error.message.contains("gemma3"))
        }
    }
}
