import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One `.safetensors` file, mapped read-only so weights are used in place without copying.
///
/// The header is validated before any tensor is handed out: a size cap, known dtypes, offsets
/// within the data section, `dtype × shape` equal to the byte length, and no two tensors sharing
/// bytes. A file that passes can be read at any offset it names without a bounds check.
package final class SafetensorsFile: WeightSource, @unchecked Sendable {
    /// A tensor's entry in the header; `range` is relative to the start of the data section.
    package struct Entry: Sendable, Equatable {
        package let dtype: DType
        package let shape: [Int]
        package let range: Range<Int>
    }

    /// Headers larger than this are rejected before parsing (the reference implementation's cap).
    package static let maximumHeaderSize = 100 * 1024 * 1024

    package let url: URL
    package let entries: [String: Entry]
    package let metadata: [String: String]
    private let base: UnsafeMutableRawPointer?
    private let length: Int
    private let dataOffset: Int

    /// Maps `url` and validates its header.
    /// - Throws: ``ModelError`` with code `unreadableFile` or `invalidSafetensors`.
    package init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelError(.unreadableFile, "cannot open \(url.path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // The size by seeking to the end: `struct stat` is ambiguous between C modules on Linux.
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            throw ModelError(.unreadableFile, "cannot stat \(url.path): \(String(cString: strerror(errno)))")
        }
        let length = Int(end)
        guard length >= 8 else {
            throw ModelError(.invalidSafetensors, "\(url.lastPathComponent) is \(length) bytes, too short for a safetensors header")
        }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw ModelError(.unreadableFile, "cannot map \(url.path): \(String(cString: strerror(errno)))")
        }
        do {
            let bytes = UnsafeRawBufferPointer(start: mapped, count: length)
            let parsed = try Self.parseHeader(bytes, fileName: url.lastPathComponent)
            self.entries = parsed.entries
            self.metadata = parsed.metadata
            self.dataOffset = parsed.dataOffset
        } catch {
            munmap(mapped, length)
            throw error
        }
        // The weights are about to be read front to back; ask the kernel to start reading now.
        _ = madvise(mapped, length, MADV_WILLNEED)
        self.base = mapped
        self.length = length
    }

    deinit {
        if let base { munmap(base, length) }
    }

    package func tensor(named name: String) -> TensorView? {
        guard let entry = entries[name], let base else { return nil }
        return TensorView(
            name: name, dtype: entry.dtype, shape: entry.shape,
            data: UnsafeRawPointer(base + dataOffset + entry.range.lowerBound))
    }

    /// Parses and validates a whole file's bytes: the 8-byte length, the JSON header, the entries.
    /// - Returns: the entries, the `__metadata__` strings and where the data section starts.
    package static func parseHeader(
        _ bytes: UnsafeRawBufferPointer, fileName: String
    ) throws -> (entries: [String: Entry], metadata: [String: String], dataOffset: Int) {
        func invalid(_ why: String) -> ModelError {
            ModelError(.invalidSafetensors, "\(fileName) is not a valid safetensors file: \(why)")
        }
        guard bytes.count >= 8 else { throw invalid("shorter than its 8-byte header length") }
        let headerSize = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerSize <= UInt64(maximumHeaderSize) else {
            throw invalid("header of \(headerSize) bytes exceeds the \(maximumHeaderSize)-byte limit")
        }
        guard 8 + Int(headerSize) <= bytes.count else {
            throw invalid("header of \(headerSize) bytes runs past the end of the \(bytes.count)-byte file")
        }
        let dataOffset = 8 + Int(headerSize)
        let dataLength = bytes.count - dataOffset
        let json = Data(bytes[8..<dataOffset])
        let object: Any
        do {
            object = try JSONLimits.jsonObject(with: json)
        } catch {
            throw ModelError(.invalidSafetensors, "\(fileName) has a header that is not JSON", cause: error)
        }
        guard let header = object as? [String: Any] else { throw invalid("header is not a JSON object") }

        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let values = value as? [String: Any] else { throw invalid("__metadata__ is not an object") }
                for (key, item) in values {
                    guard let string = item as? String else { throw invalid("__metadata__.\(key) is not a string") }
                    metadata[key] = string
                }
                continue
            }
            guard let fields = value as? [String: Any] else { throw invalid("entry \(name) is not an object") }
            guard let dtypeName = fields["dtype"] as? String else { throw invalid("tensor \(name) has no dtype") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw invalid("tensor \(name) has unknown dtype \(dtypeName)")
            }
            guard let shapeValues = fields["shape"] as? [Any], let shape = integers(shapeValues),
                shape.allSatisfy({ $0 >= 0 })
            else {
                throw invalid("tensor \(name) has no valid shape")
            }
            guard let offsetValues = fields["data_offsets"] as? [Any], let offsets = integers(offsetValues),
                offsets.count == 2
            else {
                throw invalid("tensor \(name) has no valid data_offsets")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw invalid("tensor \(name) data_offsets [\(begin), \(end)] fall outside the \(dataLength)-byte data section")
            }
            var elements = 1
            for dimension in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw invalid("tensor \(name) shape \(shape) overflows") }
                elements = product
            }
            let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow else { throw invalid("tensor \(name) shape \(shape) overflows") }
            guard expected == end - begin else {
                throw invalid("tensor \(name) is \(dtypeName) \(shape), which needs \(expected) bytes, but its data_offsets span \(end - begin)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        let sorted = entries.sorted {
            ($0.value.range.lowerBound, $0.value.range.upperBound) < ($1.value.range.lowerBound, $1.value.range.upperBound)
        }
        for (previous, next) in zip(sorted, sorted.dropFirst())
        where next.value.range.lowerBound < previous.value.range.upperBound && !next.value.range.isEmpty {
            throw invalid("tensors \(previous.key) and \(next.key) overlap")
        }
        return (entries, metadata, dataOffset)
    }

    /// JSON numbers as integers, or nil when any is not a whole number.
    private static func integers(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for value in values {
            if let number = value as? Int {
                result.append(number)
            } else if let number = value as? Double, let whole = Int(exactly: number), abs(whole) < 1 << 53 {
                result.append(whole)
            } else {
                return nil
            }
        }
        return result
    }
}
