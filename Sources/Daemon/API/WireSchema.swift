import Foundation

/// A JSON Schema (the OpenAPI 3.1 dialect), as `JSONSerialization` writes it.
typealias JSONSchema = [String: Any]

/// Builds the JSON Schemas of the wire types from the types themselves, so that a field added to a type is in the
/// API description without further work.
///
/// It decodes each type once through a decoder that answers every request with a placeholder and writes down what
/// was asked: which keys (`decode`: required, `decodeIfPresent`: optional) of which types (strings, numbers, arrays,
/// dictionaries, enumerations, and other structs, each a named component). Types with their own `init(from:)` are
/// described as they decode. For a type that is also `Encodable`, it then encodes the placeholder value, whose
/// optionals are all nil, to learn what replies always carry: a key written even when nil is required and may be
/// `null`; one left out is optional. ``WireDocumented`` adds what decoding cannot show (descriptions, allowed
/// values), ``WireSchemaDescribed`` describes a type that decodes one of several shapes.
///
/// The same decoding draws sample values for tests, given a source of random numbers: optionals present or not,
/// arrays of a few elements, any case of an enumeration, and a noted field's listed values.
final class SchemaRecorder {
    /// The named schemas (`#/components/schemas/<name>`): one per struct recorded, named after the type
    /// (`PullEvent.FileProgress`); generic types (the envelope) are written inline instead.
    private(set) var components: [String: JSONSchema] = [:]
    /// Which type each component name stands for, so that two types never share one.
    private var owners: [String: ObjectIdentifier] = [:]
    /// The structs described so far, with their placeholders: each is decoded once.
    private var described: [ObjectIdentifier: (schema: JSONSchema, value: Any)] = [:]
    /// A number in `0..<n`, when drawing samples.
    private let random: ((Int) -> Int)?

    /// - Parameter random: returns a number in `0..<n`; given, the recorder draws samples instead of describing types.
    init(random: ((Int) -> Int)? = nil) { self.random = random }

    /// A sample value of `type` (for a recorder made with `random`).
    func sample<T: Decodable>(_ type: T.Type) throws -> T {
        try record(type, note: [:]).value
    }

    /// A number in `0..<n` when drawing samples, else nil: leaves answer their placeholder.
    fileprivate func draw(_ n: Int) -> Int? { random.map { $0(n) } }

    /// The schema of `type`: a `$ref` to its component for a struct, else the schema itself.
    func schema<T: Decodable>(for type: T.Type) throws -> JSONSchema {
        try record(type, note: [:]).schema
    }

    /// Records `schema` under `name`, for shapes the document names itself (the error envelope).
    @discardableResult
    func name(_ name: String, _ schema: JSONSchema) -> JSONSchema {
        components[name] = schema
        return Self.ref(name)
    }

    static func ref(_ name: String) -> JSONSchema { ["$ref": "#/components/schemas/\(name)"] }

    /// The schema of `type` and a placeholder (or sample) value of it.
    /// - Parameter note: the note on the field being decoded, which guides samples.
    fileprivate func record<T: Decodable>(_ type: T.Type, note: JSONSchema) throws -> (schema: JSONSchema, value: T) {
        if let enumeration = type as? any WireEnumeration.Type {
            let (schema, value) = try enumeration.recorded(by: self)
            return (schema, value as! T)
        }
        if let leaf = type as? any SchemaLeaf.Type {
            let (schema, value) = try leaf.recorded(by: self, note: note)
            return (schema, value as! T)
        }
        if let (schema, value) = described[ObjectIdentifier(type)] { return (schema, value as! T) }
        let notes = (type as? any WireDocumented.Type)?.wireNotes ?? WireNotes()
        let decoder = RecordingDecoder(recorder: self, notes: notes)
        let value = try T(from: decoder)
        if random != nil { return ([:], value) }
        let schema = try describe(type, value: value, decoder: decoder, notes: notes)
        described[ObjectIdentifier(type)] = (schema, value)
        return (schema, value)
    }

    /// The schema of a type decoded by `decoder`: a `$ref` to its component for an object.
    private func describe<T: Decodable>(_ type: T.Type, value: T, decoder: RecordingDecoder, notes: WireNotes) throws -> JSONSchema {
        if let described = type as? any WireSchemaDescribed.Type { return described.wireSchema }
        if let single = decoder.single { return single }
        let schema = try objectSchema(type, value: value, decoded: decoder.properties, notes: notes)
        let name = String(reflecting: type).split(separator: ".", maxSplits: 1).last.map(String.init) ?? "\(type)"
        guard !name.contains("<") else { return schema }
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_") }) else {
            throw SchemaError("\(name) cannot name a component: a wire type must not be private or local")
        }
        if let owner = owners[name], owner != ObjectIdentifier(type) {
            throw SchemaError("two wire types are named \(name)")
        }
        owners[name] = ObjectIdentifier(type)
        components[name] = schema
        return Self.ref(name)
    }

    /// An object's schema from the keys its decoding asked for, and its encoding wrote for the placeholder.
    private func objectSchema<T: Decodable>(
        _ type: T.Type, value: T, decoded: [RecordingDecoder.Property], notes: WireNotes
    ) throws -> JSONSchema {
        var required = Set(decoded.filter(\.required).map(\.key))
        var nullable: Set<String> = []
        if let encodable = value as? any Encodable {
            let encoder = RecordingEncoder()
            try encodable.encode(to: encoder)
            let optional = Set(decoded.filter { !$0.required }.map(\.key))
            if let stray = encoder.keys.subtracting(decoded.map(\.key)).first {
                throw SchemaError("\(type) writes \(stray), which it does not read")
            }
            required = encoder.keys
            nullable = encoder.keys.intersection(optional)
        }
        if let stale = Set(notes.fields.keys).subtracting(decoded.map(\.key)).first {
            throw SchemaError("a note on \(type) names \(stale), which is not one of its fields")
        }
        var properties: [String: Any] = [:]
        for property in decoded {
            var schema = property.schema
            if nullable.contains(property.key) { schema = Self.nullable(schema) }
            for (key, note) in notes.fields[property.key] ?? [:] {
                // `null` stays allowed in a nullable field whose values are listed.
                if key == "enum", nullable.contains(property.key), let values = note as? [Any] {
                    schema[key] = values + [NSNull()]
                } else {
                    schema[key] = note
                }
            }
            properties[property.key] = schema
        }
        return [
            "type": "object", "properties": properties, "required": decoded.map(\.key).filter(required.contains),
            "additionalProperties": notes.additionalProperties,
        ]
    }

    /// `schema`, or `null`.
    static func nullable(_ schema: JSONSchema) -> JSONSchema {
        if schema.isEmpty { return schema }
        if schema["$ref"] == nil, let type = schema["type"] as? String { return schema.merging(["type": [type, "null"]]) { $1 } }
        return ["anyOf": [schema, ["type": "null"]]]
    }
}

/// A wire type the recorder cannot describe, or a note that does not fit its type.
struct SchemaError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What a wire type's schema says beyond what decoding shows.
protocol WireDocumented {
    static var wireNotes: WireNotes { get }
}

/// Notes on a wire type: keywords added to its fields' schemas, and whether it takes fields it does not list.
struct WireNotes {
    /// By JSON key: `description`, `enum`, `minimum`, ... merged into the field's schema.
    var fields: [String: JSONSchema] = [:]
    /// Whether the object takes fields beyond its own (passed on to an engine).
    var additionalProperties = false
}

/// A type that decodes one of several shapes (a string or a number, say) and so describes its schema itself.
protocol WireSchemaDescribed: Decodable {
    static var wireSchema: JSONSchema { get }
}

/// A string enumeration on the wire: its schema lists the raw values.
protocol WireEnumeration: Decodable, CaseIterable, RawRepresentable where RawValue == String {}

/// A type the recorder describes without decoding it: scalars, dates, arrays, dictionaries, optionals, enumerations.
private protocol SchemaLeaf {
    /// - Parameter note: the field's note (its `enum`, a dictionary's `required` keys), which guides samples.
    static func recorded(by recorder: SchemaRecorder, note: JSONSchema) throws -> (schema: JSONSchema, value: Self)
}

extension String: SchemaLeaf {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) -> (schema: JSONSchema, value: Self) {
        let choices = note["enum"] as? [String] ?? ["", "x", "a b/c", "ünï \"q\"\n"]
        return (["type": "string"], recorder.draw(choices.count).map { choices[$0] } ?? "")
    }
}
extension Bool: SchemaLeaf {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) -> (schema: JSONSchema, value: Self) {
        (["type": "boolean"], recorder.draw(2) == 1)
    }
}
extension Double: SchemaLeaf {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) -> (schema: JSONSchema, value: Self) {
        (["type": "number"], Self(recorder.draw(8001) ?? 0) / 8)
    }
}
extension Float: SchemaLeaf {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) -> (schema: JSONSchema, value: Self) {
        (["type": "number"], Self(recorder.draw(8001) ?? 0) / 8)
    }
}
extension Int: SchemaLeaf {}
extension Int8: SchemaLeaf {}
extension Int16: SchemaLeaf {}
extension Int32: SchemaLeaf {}
extension Int64: SchemaLeaf {}
extension UInt: SchemaLeaf {}
extension UInt8: SchemaLeaf {}
extension UInt16: SchemaLeaf {}
extension UInt32: SchemaLeaf {}
extension UInt64: SchemaLeaf {}

extension SchemaLeaf where Self: FixedWidthInteger {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) -> (schema: JSONSchema, value: Self) {
        (["type": "integer"], Self(truncatingIfNeeded: recorder.draw(100) ?? 0))
    }
}

extension Date: SchemaLeaf {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) -> (schema: JSONSchema, value: Self) {
        (["type": "string", "format": "date-time"], Date(timeIntervalSince1970: Double(recorder.draw(4_000_000_000) ?? 0)))
    }
}

extension Array: SchemaLeaf where Element: Decodable {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) throws -> (schema: JSONSchema, value: Self) {
        let elements = try (0..<(recorder.draw(4) ?? 0)).map { _ in try recorder.sample(Element.self) }
        return (["type": "array", "items": try recorder.schema(for: Element.self)], elements)
    }
}

extension Dictionary: SchemaLeaf where Key == String, Value: Decodable {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) throws -> (schema: JSONSchema, value: Self) {
        var value: Self = [:]
        if let count = recorder.draw(3) {
            for key in note["required"] as? [String] ?? (0..<count).map { "key\($0)" } { value[key] = try recorder.sample(Value.self) }
        }
        return (["type": "object", "additionalProperties": try recorder.schema(for: Value.self)], value)
    }
}

extension Optional: SchemaLeaf where Wrapped: Decodable {
    fileprivate static func recorded(by recorder: SchemaRecorder, note: JSONSchema) throws -> (schema: JSONSchema, value: Self) {
        let value = recorder.draw(2) == 1 ? try recorder.record(Wrapped.self, note: note).value : nil
        return (SchemaRecorder.nullable(try recorder.schema(for: Wrapped.self)), value)
    }
}

extension WireEnumeration {
    fileprivate static func recorded(by recorder: SchemaRecorder) throws -> (schema: JSONSchema, value: Self) {
        let cases = Array(allCases)
        guard !cases.isEmpty else { throw SchemaError("\(Self.self) has no cases") }
        return (["type": "string", "enum": cases.map(\.rawValue)], cases[recorder.draw(cases.count) ?? 0])
    }
}

// MARK: The recording decoder

/// Decodes a placeholder value, writing down every key asked for.
private final class RecordingDecoder: Decoder {
    struct Property {
        var key: String
        var schema: JSONSchema
        var required: Bool
    }

    let recorder: SchemaRecorder
    /// The notes of the type being decoded, which guide its samples.
    let notes: WireNotes
    var properties: [Property] = []
    /// The schema of a type that decodes one value rather than an object.
    var single: JSONSchema?
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    init(recorder: SchemaRecorder, notes: WireNotes) {
        self.recorder = recorder
        self.notes = notes
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(KeyedRecorder<Key>(decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw SchemaError("a wire type decodes a bare array; describe it with WireSchemaDescribed")
    }

    func singleValueContainer() -> any SingleValueDecodingContainer { SingleValueRecorder(decoder: self) }

    /// A placeholder (or sample) for `key`, recorded as required or optional.
    func value<T: Decodable>(_ type: T.Type, _ key: some CodingKey, required: Bool) throws -> T {
        let (schema, value) = try recorder.record(type, note: notes.fields[key.stringValue] ?? [:])
        if !properties.contains(where: { $0.key == key.stringValue }) {
            properties.append(Property(key: key.stringValue, schema: schema, required: required))
        }
        return value
    }
}

private struct KeyedRecorder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: RecordingDecoder
    var codingPath: [any CodingKey] { [] }
    var allKeys: [Key] { [] }

    func contains(_ key: Key) -> Bool { true }
    func decodeNil(forKey key: Key) -> Bool { false }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try decoder.value(type, key, required: true) }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? { try optional(type, key) }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decoder.value(type, key, required: true) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decoder.value(type, key, required: true) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decoder.value(type, key, required: true) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decoder.value(type, key, required: true) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decoder.value(type, key, required: true) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decoder.value(type, key, required: true) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decoder.value(type, key, required: true) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decoder.value(type, key, required: true) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decoder.value(type, key, required: true) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decoder.value(type, key, required: true) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decoder.value(type, key, required: true) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decoder.value(type, key, required: true) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decoder.value(type, key, required: true) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decoder.value(type, key, required: true) }
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try optional(type, key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try optional(type, key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try optional(type, key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try optional(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try optional(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try optional(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try optional(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try optional(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try optional(type, key) }

    /// Nil for a placeholder, so that encoding it shows which keys are written when absent; a sample may have it.
    private func optional<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
        let value = try decoder.value(type, key, required: false)
        return decoder.recorder.draw(2) == 1 ? value : nil
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        throw SchemaError("a wire type decodes a nested container at \(key.stringValue); give it a type of its own")
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        throw SchemaError("a wire type decodes a nested array at \(key.stringValue); decode an array type instead")
    }
    func superDecoder() throws -> any Decoder { throw SchemaError("a wire type decodes its superclass") }
    func superDecoder(forKey key: Key) throws -> any Decoder { throw SchemaError("a wire type decodes its superclass") }
}

/// One value: the first type asked for is the schema (``WireSchemaDescribed`` overrides it for types that try several).
private struct SingleValueRecorder: SingleValueDecodingContainer {
    let decoder: RecordingDecoder
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool { false }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try recorded(type) }
    func decode(_ type: Bool.Type) throws -> Bool { try recorded(type) }
    func decode(_ type: String.Type) throws -> String { try recorded(type) }
    func decode(_ type: Double.Type) throws -> Double { try recorded(type) }
    func decode(_ type: Float.Type) throws -> Float { try recorded(type) }
    func decode(_ type: Int.Type) throws -> Int { try recorded(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try recorded(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try recorded(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try recorded(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try recorded(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try recorded(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try recorded(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try recorded(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try recorded(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try recorded(type) }

    private func recorded<T: Decodable>(_ type: T.Type) throws -> T {
        let (schema, value) = try decoder.recorder.record(type, note: [:])
        if decoder.single == nil { decoder.single = schema }
        return value
    }
}

// MARK: The recording encoder

/// Encodes a value's top level, writing down which keys it writes.
private final class RecordingEncoder: Encoder {
    var keys: Set<String> = []
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyRecorder<Key>(encoder: self))
    }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { IgnoringEncoder() }
    func singleValueContainer() -> any SingleValueEncodingContainer { IgnoringEncoder() }
}

private struct KeyRecorder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: RecordingEncoder
    var codingPath: [any CodingKey] { [] }

    func encodeNil(forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode<T: Encodable>(_ value: T, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Bool, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: String, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Double, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Float, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Int, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Int8, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Int16, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Int32, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: Int64, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: UInt, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: UInt8, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: UInt16, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: UInt32, forKey key: Key) { encoder.keys.insert(key.stringValue) }
    func encode(_ value: UInt64, forKey key: Key) { encoder.keys.insert(key.stringValue) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        encoder.keys.insert(key.stringValue)
        return KeyedEncodingContainer(KeyRecorder<NestedKey>(encoder: RecordingEncoder()))
    }
    func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        encoder.keys.insert(key.stringValue)
        return IgnoringEncoder()
    }
    func superEncoder() -> any Encoder { RecordingEncoder() }
    func superEncoder(forKey key: Key) -> any Encoder {
        encoder.keys.insert(key.stringValue)
        return RecordingEncoder()
    }
}

/// Takes values below the top level and drops them.
private struct IgnoringEncoder: UnkeyedEncodingContainer, SingleValueEncodingContainer {
    var codingPath: [any CodingKey] { [] }
    var count: Int { 0 }

    mutating func encodeNil() {}
    mutating func encode<T: Encodable>(_ value: T) {}
    mutating func encode(_ value: Bool) {}
    mutating func encode(_ value: String) {}
    mutating func encode(_ value: Double) {}
    mutating func encode(_ value: Float) {}
    mutating func encode(_ value: Int) {}
    mutating func encode(_ value: Int8) {}
    mutating func encode(_ value: Int16) {}
    mutating func encode(_ value: Int32) {}
    mutating func encode(_ value: Int64) {}
    mutating func encode(_ value: UInt) {}
    mutating func encode(_ value: UInt8) {}
    mutating func encode(_ value: UInt16) {}
    mutating func encode(_ value: UInt32) {}
    mutating func encode(_ value: UInt64) {}
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(KeyRecorder<NestedKey>(encoder: RecordingEncoder()))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { IgnoringEncoder() }
    mutating func superEncoder() -> any Encoder { RecordingEncoder() }
}
