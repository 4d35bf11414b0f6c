/// A safetensors element type. Only `bf16`, `f16` and `f32` can hold weights the engine computes
/// with; the others are known so that headers naming them still validate.
package enum DType: String, Sendable, CaseIterable {
    case bf16 = "BF16"
    case f16 = "F16"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    package var size: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .bf16, .f16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }
}
