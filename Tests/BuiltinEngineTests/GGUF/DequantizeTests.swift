import Foundation
import Testing

@testable import ModelText

/// Dequantization against the `gguf` Python package's reference dequantizer (docs/design/gguf.md, Tensor types).
@Suite("GGUF dequantization")
struct DequantizeTests {
    /// Every element of `tensor` dequantized by the engine equals `reference`'s, bit for bit.
    static func expectIdentical(_ tensor: GGUFFile.TensorInfo, in file: GGUFFile, reference: GGUFFile.TensorInfo, in referenceFile: GGUFFile) throws {
        #expect(reference.type == .f32)
        #expect(reference.dimensions == tensor.dimensions, "\(tensor.name)")
        let values = try Dequantize.floats(tensor, in: file)
        let expected = try Dequantize.floats(reference, in: referenceFile)
        let differences = zip(values, expected).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
        #expect(
            differences.isEmpty,
            "\(tensor.name) (\(tensor.type)): \(differences.count) of \(values.count) differ, first \(differences.prefix(3).map { "[\($0.offset)] \($0.element.0) vs \($0.element.1)" })"
        )
    }

    @Test("random blocks of every supported type", arguments: [1, 2, 3])
    func randomBlocks(seed: Int) throws {
        let url = FileManager.default.temporaryDirectory.appending(path: "dequant-\(UUID().uuidString).gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        try runScript("gguf-reference.py", ["random", url.path, "\(seed)"])
        let file = try GGUFFile(url: url)
        var types: Set<GGMLType> = []
        for tensor in file.tensors where !tensor.name.hasSuffix(".reference") {
            let reference = try #require(file.tensorInfo(named: tensor.name + ".reference"))
            try Self.expectIdentical(tensor, in: file, reference: reference, in: file)
            types.insert(tensor.type)
        }
        #expect(types == Set(GGMLType.supported))
    }

    @Test("a partial block or too few bytes is an error")
    func partialBlocks() throws {
        let bytes = [UInt8](repeating: 0, count: 34)
        var output = [Float](repeating: 0, count: 64)
        try bytes.withUnsafeBytes { data in
            try output.withUnsafeMutableBufferPointer { out in
                try Dequantize.run(.q8_0, data, count: 32, into: out.baseAddress!)
                #expect(throws: ModelError.self) { try Dequantize.run(.q8_0, data, count: 16, into: out.baseAddress!) }
                #expect(throws: ModelError.self) { try Dequantize.run(.q8_0, data, count: 64, into: out.baseAddress!) }
            }
        }
    }
}
