import Foundation
import Testing

@testable import ModelText

@Suite("safetensors header validation")
struct SafetensorsTests {
    /// Writes a safetensors file with `header` as its JSON and `dataLength` bytes of data
    /// (f32 values 0, 1, 2... so reads can be checked).
    private func write(header: String, dataLength: Int, declaredHeaderLength: UInt64? = nil) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("st-\(UUID().uuidString).safetensors")
        var bytes = Data()
        let json = Data(header.utf8)
        var length = (declaredHeaderLength ?? UInt64(json.count)).littleEndian
        bytes.append(Data(bytes: &length, count: 8))
        bytes.append(json)
        for i in 0..<(dataLength / 4) {
            var value = Float(i).bitPattern.littleEndian
            bytes.append(Data(bytes: &value, count: 4))
        }
        bytes.append(Data(count: dataLength % 4))
        try bytes.write(to: url)
        return url
    }

    private func expectInvalid(_ url: URL, mentioning words: [String]) {
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try SafetensorsFile(url: url)
            Issue.record("the header was accepted")
        } catch let error as ModelError {
            #expect(error.code == .invalidSafetensors)
            for word in words { #expect(error.message.contains(word), "\(error.message)") }
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func validFileIsReadInPlace() throws {
        let header =
            #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"empty":{"dtype":"F32","shape":[0],"data_offsets":[32,32]}}"#
        let url = try write(header: header, dataLength: 32)
        defer { try? FileManager.default.removeItem(at: url) }
        let file = try SafetensorsFile(url: url)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.entries.count == 3)
        let a = try #require(file.tensor(named: "a"))
        #expect(a.shape == [2, 3])
        #expect(a.floats() == [0, 1, 2, 3, 4, 5])
        // Bytes 24..<32 hold the f32 values 6 and 7; read as bf16 they are their upper halves.
        let b = try #require(file.tensor(named: "b"))
        #expect(b.floats() == [0, 6, 0, 7])
        #expect(file.tensor(named: "missing") == nil)
    }

    @Test func offsetsOutOfBoundsAreRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
        expectInvalid(try write(header: header, dataLength: 16), mentioning: ["outside"])
    }

    @Test func reversedOffsetsAreRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#
        expectInvalid(try write(header: header, dataLength: 16), mentioning: ["outside"])
    }

    @Test func overlappingTensorsAreRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}}"#
        expectInvalid(try write(header: header, dataLength: 32), mentioning: ["overlap"])
    }

    @Test func dtypeTimesShapeMismatchIsRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#
        expectInvalid(try write(header: header, dataLength: 24), mentioning: ["needs 24 bytes", "span 20"])
    }

    @Test func oversizedHeaderIsRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let url = try write(header: header, dataLength: 4, declaredHeaderLength: 200 * 1024 * 1024)
        expectInvalid(url, mentioning: ["exceeds"])
    }

    @Test func headerLongerThanFileIsRejected() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let url = try write(header: header, dataLength: 4, declaredHeaderLength: 4096)
        expectInvalid(url, mentioning: ["past the end"])
    }

    @Test func unknownDtypeAndBadJSONAreRejected() throws {
        expectInvalid(try write(header: #"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#, dataLength: 4), mentioning: ["unknown dtype"])
        let url = try write(header: #"{"a": [1,"#, dataLength: 4)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(throws: ModelError.self) { try SafetensorsFile(url: url) }
    }
}
