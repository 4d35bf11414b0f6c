/// A tensor element type as GGUF files number them (ggml's `ggml_type`).
///
/// Every type is either one scalar per element or a block of `blockSize` elements stored in `blockBytes`
/// bytes (docs/design/gguf.md, Tensor types). Types the engine cannot compute with are still known by name
/// and size, so that a file holding them validates and the error names the type.
package struct GGMLType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package let rawValue: UInt32

    package init(rawValue: UInt32) { self.rawValue = rawValue }

    package static let f32 = GGMLType(rawValue: 0)
    package static let f16 = GGMLType(rawValue: 1)
    package static let q4_0 = GGMLType(rawValue: 2)
    package static let q8_0 = GGMLType(rawValue: 8)
    package static let q4_K = GGMLType(rawValue: 12)
    package static let q5_K = GGMLType(rawValue: 13)
    package static let q6_K = GGMLType(rawValue: 14)
    package static let bf16 = GGMLType(rawValue: 30)

    /// The types the built-in engine reads: dequantizes and computes with.
    package static let supported: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_K, .q5_K, .q6_K]

    /// Name, elements per block and bytes per block of every type ggml defines.
    private static let layouts: [UInt32: (name: String, blockSize: Int, blockBytes: Int)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
        7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
        12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
        16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
        20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
        24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
        29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
        39: ("MXFP4", 32, 17),
    ]

    /// The types the built-in engine quantizes a safetensors model to on load (`modeld engine --quantize`;
    /// docs/design/gguf.md, Quantizing).
    package static let onLoad: [GGMLType] = [.q8_0, .q4_0]

    /// The on-load type called `name` (`q8_0`, `Q4_0`: any case), or nil.
    package init?(onLoadName name: String) {
        guard let type = Self.onLoad.first(where: { $0.description.lowercased() == name.lowercased() }) else { return nil }
        self = type
    }

    /// Whether ggml defines this type (a file naming another number is invalid).
    package var isKnown: Bool { Self.layouts[rawValue] != nil }
    package var isSupported: Bool { Self.supported.contains(self) }
    /// Elements per block (1 for scalar types); 0 for an unknown type.
    package var blockSize: Int { Self.layouts[rawValue]?.blockSize ?? 0 }
    /// Bytes per block; 0 for an unknown type.
    package var blockBytes: Int { Self.layouts[rawValue]?.blockBytes ?? 0 }
    package var description: String { Self.layouts[rawValue]?.name ?? "type \(rawValue)" }

    /// Bytes of a row of `count` elements, or nil when `count` is not a whole number of blocks.
    package func rowBytes(_ count: Int) -> Int? {
        guard blockSize > 0, count % blockSize == 0 else { return nil }
        return count / blockSize * blockBytes
    }
}
