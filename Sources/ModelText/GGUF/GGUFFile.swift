import Foundation

/// A GGUF model file (docs/design/gguf.md), mapped read-only: metadata, tensor infos and tensors used in place.
///
/// Everything in the header is checked before a tensor is handed out: the magic and version, every count
/// and length against the bytes left, value and tensor types, at most four dimensions without overflow,
/// whole blocks per row, offsets aligned and inside the data section, no two tensors sharing bytes, unique
/// keys and names. A file that passes can be read at any offset its infos name.
package final class GGUFFile: @unchecked Sendable {
    /// One tensor's info. `dimensions` is in GGUF order (`ne[0]`, the contiguous one, first); `shape` is the
    /// row-major order PyTorch and safetensors use (reversed).
    package struct TensorInfo: Sendable, Equatable {
        package let name: String
        package let type: GGMLType
        package let dimensions: [Int]
        /// Relative to the start of the data section.
        package let offset: Int
        package let byteCount: Int

        package var shape: [Int] { dimensions.reversed() }
        package var elementCount: Int { dimensions.reduce(1, *) }
    }

    /// The versions read: 2 and 3 share one layout (version 1, with 32-bit counts, is long obsolete).
    package static let supportedVersions: ClosedRange<UInt32> = 2...3
    /// The default alignment of the data section and of tensor offsets when `general.alignment` is absent.
    package static let defaultAlignment = 32
    /// ggml's limit on a tensor's dimensions.
    package static let maximumDimensions = 4

    package let url: URL
    package let version: UInt32
    package let metadata: [String: GGUFValue]
    /// Keys in file order.
    package let keys: [String]
    /// Tensors in file order.
    package let tensors: [TensorInfo]
    package let alignment: Int
    /// Where the data section starts, from the start of the file.
    package let dataOffset: Int
    private let indexOfTensor: [String: Int]
    private let file: MappedFile

    /// Maps `url` and validates its header.
    /// - Throws: ``ModelError`` `unreadableFile` or `invalidGGUF`, naming the problem.
    package init(url: URL) throws {
        self.url = url
        file = try MappedFile(url: url)
        let header = try Self.parse(file.bytes, fileName: url.lastPathComponent)
        version = header.version
        metadata = header.metadata
        keys = header.keys
        tensors = header.tensors
        alignment = header.alignment
        dataOffset = header.dataOffset
        indexOfTensor = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
        file.willNeed()
    }

    package func tensorInfo(named name: String) -> TensorInfo? {
        indexOfTensor[name].map { tensors[$0] }
    }

    /// The bytes of a tensor this file described.
    package func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[(dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount)])
    }

    /// The file's parsed header.
    package struct Header {
        package var version: UInt32
        package var metadata: [String: GGUFValue]
        package var keys: [String]
        package var tensors: [TensorInfo]
        package var alignment: Int
        package var dataOffset: Int
    }

    /// Parses and validates the header of a whole file's bytes.
    package static func parse(_ bytes: UnsafeRawBufferPointer, fileName: String) throws -> Header {
        var reader = Reader(bytes: bytes, fileName: fileName)
        guard bytes.count >= 4, Array(bytes[0..<4]) == Array("GGUF".utf8) else {
            throw reader.invalid("it does not start with the GGUF magic")
        }
        reader.offset = 4
        let version = try reader.read(UInt32.self, "the version")
        guard supportedVersions.contains(version) else {
            throw reader.invalid("version \(version) is not supported (versions \(supportedVersions.lowerBound)–\(supportedVersions.upperBound) are)")
        }
        let tensorCount = try reader.read(UInt64.self, "the tensor count")
        let keyCount = try reader.read(UInt64.self, "the metadata count")
        // Each key/value takes at least 13 bytes and each tensor info 28: counts beyond the file are rejected
        // before any loop runs.
        guard keyCount <= UInt64(bytes.count / 13), tensorCount <= UInt64(bytes.count / 28) else {
            throw reader.invalid("it claims \(keyCount) metadata entries and \(tensorCount) tensors, more than its \(bytes.count) bytes can hold")
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for index in 0..<Int(keyCount) {
            let key = try reader.readString("the key of metadata entry \(index)")
            guard !key.isEmpty else { throw reader.invalid("metadata entry \(index) has an empty key") }
            guard metadata[key] == nil else { throw reader.invalid("metadata key \(key) appears twice") }
            let type = try reader.read(UInt32.self, "the type of \(key)")
            metadata[key] = try reader.readValue(type: type, key: key, nested: false)
            keys.append(key)
        }

        var alignment = defaultAlignment
        if let value = metadata["general.alignment"] {
            guard case .unsigned(let raw) = value, let align = Int(exactly: raw), align > 0, align & (align - 1) == 0, align <= 1 << 20 else {
                throw reader.invalid("general.alignment \(value) is not a power of two up to 1 MiB")
            }
            alignment = align
        }

        var tensors: [TensorInfo] = []
        var names = Set<String>()
        for index in 0..<Int(tensorCount) {
            let name = try reader.readString("the name of tensor \(index)")
            guard names.insert(name).inserted else { throw reader.invalid("tensor \(name) appears twice") }
            let count = try reader.read(UInt32.self, "the dimension count of \(name)")
            guard count >= 1, count <= UInt32(maximumDimensions) else {
                throw reader.invalid("tensor \(name) has \(count) dimensions (1 to \(maximumDimensions) are allowed)")
            }
            var dimensions: [Int] = []
            var elements = 1
            for _ in 0..<count {
                let raw = try reader.read(UInt64.self, "the dimensions of \(name)")
                guard let dimension = Int(exactly: raw) else { throw reader.invalid("tensor \(name) has a dimension of \(raw)") }
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow, product <= 1 << 48 else { throw reader.invalid("tensor \(name) has too many elements") }
                elements = product
                dimensions.append(dimension)
            }
            let type = GGMLType(rawValue: try reader.read(UInt32.self, "the type of \(name)"))
            guard type.isKnown else { throw reader.invalid("tensor \(name) has unknown type \(type.rawValue)") }
            guard let rowBytes = type.rowBytes(dimensions[0]) else {
                throw reader.invalid(
                    "tensor \(name) is \(type) with rows of \(dimensions[0]) elements, not a whole number of \(type.blockSize)-element blocks")
            }
            let rows = dimensions.dropFirst().reduce(1, *)
            let rawOffset = try reader.read(UInt64.self, "the offset of \(name)")
            guard let offset = Int(exactly: rawOffset), offset % alignment == 0 else {
                throw reader.invalid("tensor \(name) starts at offset \(rawOffset), not a multiple of the alignment \(alignment)")
            }
            let (byteCount, overflow) = rowBytes.multipliedReportingOverflow(by: rows)
            guard !overflow else { throw reader.invalid("tensor \(name) has too many elements") }
            tensors.append(TensorInfo(name: name, type: type, dimensions: dimensions, offset: offset, byteCount: byteCount))
        }

        let (padded, _) = reader.offset.addingReportingOverflow(alignment - 1)
        // A file without tensor data (a vocabulary-only file) may end before the padding.
        let dataOffset = min(padded / alignment * alignment, bytes.count)
        let dataLength = bytes.count - dataOffset
        for tensor in tensors where tensor.offset > dataLength || tensor.byteCount > dataLength - tensor.offset {
            throw reader.invalid(
                "tensor \(tensor.name) (\(tensor.byteCount) bytes at offset \(tensor.offset)) runs past the end of the \(dataLength)-byte data section"
            )
        }
        let sorted = tensors.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where next.offset < previous.offset + previous.byteCount {
            throw reader.invalid("tensors \(previous.name) and \(next.name) overlap")
        }
        return Header(version: version, metadata: metadata, keys: keys, tensors: tensors, alignment: alignment, dataOffset: dataOffset)
    }

    /// A cursor over the header's bytes whose every read is bounds-checked.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        let fileName: String
        var offset = 0

        func invalid(_ why: String) -> ModelError {
            ModelError(.invalidGGUF, "\(fileName) is not a valid GGUF file: \(why)")
        }

        mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
            let size = MemoryLayout<T>.size
            guard bytes.count - offset >= size else { throw invalid("it ends inside \(what) at byte \(offset)") }
            defer { offset += size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }

        mutating func readString(_ what: String) throws -> String {
            let length = try read(UInt64.self, "the length of \(what)")
            guard length <= UInt64(bytes.count - offset) else {
                throw invalid("\(what) claims \(length) bytes, past the end of the file")
            }
            let end = offset + Int(length)
            defer { offset = end }
            guard let string = String(validating: bytes[offset..<end], as: UTF8.self) else {
                throw invalid("\(what) is not valid UTF-8")
            }
            return string
        }

        /// The smallest encoding of a value of `type`, to bound an array's count before reading it.
        static func minimumSize(of type: UInt32) -> Int? {
            switch type {
            case 0, 1, 7: 1
            case 2, 3: 2
            case 4, 5, 6: 4
            case 8, 10, 11, 12: 8
            default: nil
            }
        }

        mutating func readValue(type: UInt32, key: String, nested: Bool) throws -> GGUFValue {
            switch type {
            case 0: return .unsigned(UInt64(try read(UInt8.self, key)))
            case 1: return .signed(Int64(try read(Int8.self, key)))
            case 2: return .unsigned(UInt64(try read(UInt16.self, key)))
            case 3: return .signed(Int64(try read(Int16.self, key)))
            case 4: return .unsigned(UInt64(try read(UInt32.self, key)))
            case 5: return .signed(Int64(try read(Int32.self, key)))
            case 6: return .float(Double(Float(bitPattern: try read(UInt32.self, key))))
            case 7:
                let raw = try read(UInt8.self, key)
                guard raw <= 1 else { throw invalid("\(key) is a bool of value \(raw)") }
                return .bool(raw == 1)
            case 8: return .string(try readString(key))
            case 9:
                guard !nested else { throw invalid("\(key) is an array of arrays, which is not supported") }
                let elementType = try read(UInt32.self, "the element type of \(key)")
                let count = try read(UInt64.self, "the length of \(key)")
                guard let size = Self.minimumSize(of: elementType) ?? (elementType == 9 ? 12 : nil) else {
                    throw invalid("\(key) is an array of unknown value type \(elementType)")
                }
                guard count <= UInt64((bytes.count - offset) / size) else {
                    throw invalid("\(key) claims \(count) elements, more than the rest of the file holds")
                }
                var values: [GGUFValue] = []
                values.reserveCapacity(Int(count))
                for _ in 0..<Int(count) { values.append(try readValue(type: elementType, key: key, nested: true)) }
                return .array(values)
            case 10: return .unsigned(try read(UInt64.self, key))
            case 11: return .signed(try read(Int64.self, key))
            case 12: return .float(Double(bitPattern: try read(UInt64.self, key)))
            default: throw invalid("\(key) has unknown value type \(type)")
            }
        }
    }
}
