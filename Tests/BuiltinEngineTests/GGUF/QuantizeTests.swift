import EngineCompute
import Foundation
import Testing

@testable import ModelText

/// Quantization on load against the `gguf` Python package's quantizer (docs/design/gguf.md, Quantizing).
@Suite("GGUF quantization")
struct QuantizeTests {
    @Test("Q8_0 and Q4_0 blocks are byte-identical to the gguf package's, from F32 and BF16 rows", arguments: [1, 2, 3])
    func identicalToReference(seed: Int) throws {
        let url = FileManager.default.temporaryDirectory.appending(path: "quant-\(UUID().uuidString).gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        try runScript("gguf-reference.py", ["quantize", url.path, "\(seed)"])
        let file = try GGUFFile(url: url)
        for source in ["F32", "BF16"] {
            let tensor = try #require(file.tensorInfo(named: source))
            let values = try Dequantize.floats(tensor, in: file)
            for type in GGMLType.onLoad {
                let reference = try #require(file.tensorInfo(named: "\(source).\(type)"))
                #expect(reference.type == type)
                let expected = [UInt8](file.data(of: reference))
                var bytes = [UInt8](repeating: 0xAA, count: expected.count)
                try values.withUnsafeBufferPointer { input in
                    try bytes.withUnsafeMutableBytes { output in
                        try Quantize.blocks(type, input.baseAddress!, count: values.count, into: output.baseAddress!)
                    }
                }
                let blocks = expected.count / type.blockBytes
                let differing = (0..<blocks).filter { b in
                    bytes[(b * type.blockBytes)..<((b + 1) * type.blockBytes)] != expected[(b * type.blockBytes)..<((b + 1) * type.blockBytes)]
                }
                #expect(differing.isEmpty, "\(source) → \(type): \(differing.count) of \(blocks) blocks differ, first \(differing.prefix(5))")
            }
        }
    }

    @Test("a type the engine does not quantize to is not named, and an infinite value is an error naming its element")
    func refusals() throws {
        #expect(GGMLType(onLoadName: "Q8_0") == .q8_0 && GGMLType(onLoadName: "q4_0") == .q4_0)
        #expect(GGMLType(onLoadName: "q4_k_m") == nil && GGMLType(onLoadName: "bogus") == nil)
        var values = [Float](repeating: 1, count: 64)
        values[40] = .infinity
        var output = [UInt8](repeating: 0, count: 68)
        do {
            try values.withUnsafeBufferPointer { input in
                try output.withUnsafeMutableBytes { try Quantize.blocks(.q8_0, input.baseAddress!, count: 64, into: $0.baseAddress!) }
            }
            Issue.record("an infinite weight was quantized")
        } catch let error as ModelError {
            #expect(error.message.contains("element 40"), "\(error)")
        }
    }
}
