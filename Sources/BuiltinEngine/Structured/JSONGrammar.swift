import Foundation
import ModelText

/// A JSON Schema the engine cannot constrain generation to (or no schema at all): a 400 that names the feature
/// and where in the schema it is.
package struct SchemaError: Error, CustomStringConvertible, Sendable {
    package var message: String
    package init(_ message: String, path: String = "") {
        self.message = path.isEmpty || path == "#" ? message : "\(message) (at \(path))"
    }
    package var description: String { message }
}

/// A JSON Schema compiled for constrained generation: a graph of nodes, each one kind of JSON value, read byte by
/// byte by ``JSONMatcher``. docs/builtin-engine.md, Structured output, says which keywords it supports and what it
/// generates (compact JSON, properties in schema order, no additional properties).
package final class JSONGrammar: Sendable {
    enum Node: Sendable {
        /// An object with these properties, in this order (optional ones may be left out).
        case object([Property])
        /// An object with any keys (free strings), each value of node `value`.
        case map(value: Int)
        case array(item: Int, min: Int, max: Int)
        /// A string of `min...max` characters, or one the pattern matches.
        case string(min: Int, max: Int, pattern: PatternAutomaton?)
        case number(integer: Bool)
        /// One of a fixed set of JSON texts (`enum`, `const`, `true`, `false`, `null`).
        case literal(LiteralTrie)
        case anyOf([Int])
        /// These parts one after another (text around a JSON value, as tool calls need).
        case sequence([Int])
    }

    struct Property: Sendable {
        /// The key as JSON text, with its quotes.
        var key: [UInt8]
        var value: Int
        var required: Bool
    }

    /// The byte strings of a literal node as a trie; node 0 is the root.
    struct LiteralTrie: Sendable {
        var children: [[(byte: UInt8, node: Int32)]] = [[]]
        var terminal: [Bool] = [false]
        /// The fewest bytes from each trie node to a complete literal.
        var toEnd: [Int] = []

        init(_ texts: [[UInt8]]) {
            for text in texts {
                var node = 0
                for byte in text {
                    if let child = children[node].first(where: { $0.byte == byte }) {
                        node = Int(child.node)
                    } else {
                        children.append([])
                        terminal.append(false)
                        children[node].append((byte, Int32(children.count - 1)))
                        node = children.count - 1
                    }
                }
                terminal[node] = true
            }
            toEnd = [Int](repeating: 0, count: children.count)
            for node in children.indices.reversed() {
                // Children always have higher indices than their parent.
                toEnd[node] = terminal[node] ? 0 : (children[node].map { toEnd[Int($0.node)] + 1 }.min() ?? JSONGrammar.unreachable)
            }
        }

        func child(_ node: Int32, _ byte: UInt8) -> Int32? {
            children[Int(node)].first { $0.byte == byte }?.node
        }
    }

    /// Costs of an object node's positions (in bytes), for the fewest bytes that still close it.
    struct ObjectCosts: Sendable {
        /// Bytes of `"key": value` with the value's shortest form, per property.
        var cost: [Int]
        /// Over the required properties from index i on: their summed cost and their count (each needs a comma).
        var requiredCost: [Int]
        var requiredCount: [Int]
        /// The fewest bytes to close the object when a key with index i or later must come next.
        var fromKey: [Int]
        /// Whether property i can be written at all (its value has a finite shortest form).
        var usable: [Bool]
    }

    let nodes: [Node]
    let root: Int
    /// The shortest JSON text of each node, in bytes.
    let shortest: [Int]
    /// Per node, for object nodes.
    let objectCosts: [ObjectCosts?]
    /// A free string: the keys of ``Node/map(value:)``.
    let keyString: Int

    /// Stacks deeper than this do not open another object or array.
    static let maxDepth = 48
    static let unreachable = 1 << 40

    /// The fewest bytes of any output the grammar accepts.
    package var shortestOutput: Int { shortest[root] }

    /// `response_format: {"type": "json_object"}`: any JSON object.
    package convenience init() {
        try! self.init(schema: .object(JinjaObject(["type": .string("object")])))
    }

    /// Compiles `schema` (a JSON Schema, as parsed keeping key order), the value written between `prefix` and
    /// `suffix` when they are given.
    /// - Throws: ``SchemaError`` naming the first keyword or value it cannot constrain to.
    package init(schema: JinjaValue, prefix: String = "", suffix: String = "") throws {
        var compiler = SchemaCompiler(document: schema)
        let keyString = compiler.add(.string(min: 0, max: .max, pattern: nil))
        var root = try compiler.compile(schema, path: "#")
        if !prefix.isEmpty || !suffix.isEmpty {
            var parts = [root]
            if !prefix.isEmpty { parts.insert(compiler.add(.literal(.init([Array(prefix.utf8)]))), at: 0) }
            if !suffix.isEmpty { parts.append(compiler.add(.literal(.init([Array(suffix.utf8)])))) }
            root = compiler.add(.sequence(parts))
        }
        let nodes = compiler.nodes.map { $0! }
        let shortest = Self.shortestForms(nodes)
        guard shortest[root] < Self.unreachable else { throw SchemaError("the schema has no finite instance (a required property refers to itself)") }
        self.nodes = nodes
        self.root = root
        self.keyString = keyString
        self.shortest = shortest
        objectCosts = nodes.map { node in
            guard case .object(let properties) = node else { return nil }
            return Self.costs(properties, shortest: shortest)
        }
    }

    private static func add(_ a: Int, _ b: Int) -> Int { min(unreachable, a + b) }

    /// The shortest form of every node, by relaxing until nothing changes (recursive schemas converge).
    private static func shortestForms(_ nodes: [Node]) -> [Int] {
        var shortest = [Int](repeating: unreachable, count: nodes.count)
        var changed = true
        while changed {
            changed = false
            for (index, node) in nodes.enumerated() {
                let value: Int
                switch node {
                case .object(let properties):
                    value = add(costs(properties, shortest: shortest).fromKeyOrClose(0), 1)
                case .map: value = 2
                case .array(let item, let min, _):
                    value = min == 0 ? 2 : add(2 + (min - 1), shortest[item] >= unreachable ? unreachable : shortest[item] * min)
                case .string(let min, _, let pattern):
                    value = 2 + (pattern.map { Int($0.distance[Int(PatternAutomaton.start)]) } ?? min)
                case .number: value = 1
                case .literal(let trie): value = trie.toEnd[0]
                case .anyOf(let alternatives): value = alternatives.map { shortest[$0] }.min() ?? unreachable
                case .sequence(let parts): value = parts.reduce(0) { add($0, shortest[$1]) }
                }
                if value < shortest[index] {
                    shortest[index] = value
                    changed = true
                }
            }
        }
        return shortest
    }

    private static func costs(_ properties: [Property], shortest: [Int]) -> ObjectCosts {
        let n = properties.count
        let cost = properties.map { add($0.key.count + 1, shortest[$0.value]) }
        var requiredCost = [Int](repeating: 0, count: n + 1)
        var requiredCount = [Int](repeating: 0, count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            requiredCost[i] = requiredCost[i + 1]
            requiredCount[i] = requiredCount[i + 1]
            if properties[i].required {
                requiredCost[i] = add(requiredCost[i], cost[i])
                requiredCount[i] += 1
            }
        }
        var fromKey = [Int](repeating: unreachable, count: n + 1)
        for i in 0..<n {
            var best = unreachable
            for k in i..<n {
                best = min(best, add(add(cost[k], requiredCost[k + 1]), requiredCount[k + 1] + 1))
                if properties[k].required { break }
            }
            fromKey[i] = best
        }
        return ObjectCosts(
            cost: cost, requiredCost: requiredCost, requiredCount: requiredCount, fromKey: fromKey, usable: cost.map { $0 < unreachable })
    }

    /// The keys allowed next when the key at `index` or a later one comes: up to the first required one.
    func keyChoices(_ properties: [Property], costs: ObjectCosts, from index: Int) -> [Int] {
        var choices: [Int] = []
        var k = index
        while k < properties.count {
            if costs.usable[k] { choices.append(k) }
            if properties[k].required { break }
            k += 1
        }
        return choices
    }
}

extension JSONGrammar.ObjectCosts {
    /// The fewest bytes to finish an object just opened (`{` read): `}` if nothing is required, else keys.
    func fromKeyOrClose(_ index: Int) -> Int {
        requiredCount[index] == 0 ? 1 : fromKey[index]
    }
}

/// Turns a JSON Schema document into ``JSONGrammar`` nodes, resolving `$ref`s within the document.
private struct SchemaCompiler {
    let document: JinjaValue
    var nodes: [JSONGrammar.Node?] = []
    var refs: [String: Int] = [:]
    var anyValue: Int?

    /// Keywords that describe and do not constrain: ignored.
    static let annotations: Set<String> = [
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "readOnly", "writeOnly", "deprecated",
        "$defs", "definitions",
    ]
    /// Keywords that constrain, which the compiler handles.
    static let supported: Set<String> = [
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "minLength",
        "maxLength", "pattern", "format", "anyOf", "allOf", "$ref", "uniqueItems",
    ]
    /// `format`s generated through an equivalent pattern.
    static let formats: [String: String] = [
        "date": #"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"#,
        "time": #"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"#,
        "date-time": #"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"#,
        "uuid": #"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"#,
    ]
    static let maxNodes = 10_000

    init(document: JinjaValue) {
        self.document = document
    }

    mutating func add(_ node: JSONGrammar.Node) -> Int {
        nodes.append(node)
        return nodes.count - 1
    }

    /// Any JSON value (`{}` or `true`): an object of anything, an array of anything, a string, a number, or a literal.
    mutating func anyNode() -> Int {
        if let anyValue { return anyValue }
        let index = add(.anyOf([]))
        anyValue = index
        let map = add(.map(value: index))
        let array = add(.array(item: index, min: 0, max: .max))
        let string = add(.string(min: 0, max: .max, pattern: nil))
        let number = add(.number(integer: false))
        let literal = add(.literal(.init(["true", "false", "null"].map { Array($0.utf8) })))
        nodes[index] = .anyOf([map, array, string, number, literal])
        return index
    }

    mutating func compile(_ schema: JinjaValue, path: String) throws -> Int {
        guard nodes.count < Self.maxNodes else { throw SchemaError("the schema is too large (over \(Self.maxNodes) parts)") }
        switch schema {
        case .bool(true): return anyNode()
        case .bool(false): throw SchemaError("the schema false allows no value", path: path)
        case .object(let object): return try compile(object, path: path)
        default: throw SchemaError("a schema must be an object or a boolean", path: path)
        }
    }

    private mutating func compile(_ schema: JinjaObject, path: String) throws -> Int {
        for key in schema.keys where !Self.annotations.contains(key) && !Self.supported.contains(key) {
            throw SchemaError("the JSON Schema keyword \"\(key)\" is not supported for structured output", path: path)
        }
        let constraining = schema.keys.filter { Self.supported.contains($0) }
        if case .string(let reference)? = schema["$ref"] {
            guard constraining == ["$ref"] else { throw SchemaError("$ref beside other keywords is not supported", path: path) }
            return try resolve(reference, path: path)
        } else if schema["$ref"] != nil {
            throw SchemaError("$ref must be a string", path: path)
        }
        if let anyOf = schema["anyOf"] {
            guard constraining == ["anyOf"] else { throw SchemaError("anyOf beside other keywords is not supported", path: path) }
            guard case .array(let list) = anyOf, !list.isEmpty else { throw SchemaError("anyOf must be a non-empty array", path: path) }
            let index = add(.anyOf([]))
            var alternatives: [Int] = []
            for (position, alternative) in list.enumerated() { alternatives.append(try compile(alternative, path: "\(path)/anyOf/\(position)")) }
            nodes[index] = .anyOf(alternatives)
            return index
        }
        if let allOf = schema["allOf"] {
            guard constraining == ["allOf"], case .array(let list) = allOf, list.count == 1 else {
                throw SchemaError("allOf is supported only alone and with one schema", path: path)
            }
            return try compile(list[0], path: "\(path)/allOf/0")
        }
        if let value = schema["const"] {
            return add(.literal(.init([try Self.text(value, path: path)])))
        }
        if let values = schema["enum"] {
            guard case .array(let list) = values, !list.isEmpty else { throw SchemaError("enum must be a non-empty array", path: path) }
            var texts: [[UInt8]] = []
            for value in list where Self.matchesType(value, schema["type"]) { texts.append(try Self.text(value, path: path)) }
            guard !texts.isEmpty else { throw SchemaError("no value of enum has the schema's type", path: path) }
            return add(.literal(.init(texts)))
        }
        var types: [String]
        switch schema["type"] {
        case .string(let one)?: types = [one]
        case .array(let list)?:
            types = try list.map {
                guard case .string(let name) = $0 else { throw SchemaError("type must be a string or a list of strings", path: path) }
                return name
            }
        case nil:
            if schema["properties"] != nil || schema["required"] != nil || schema["additionalProperties"] != nil {
                types = ["object"]
            } else if schema["items"] != nil || schema["minItems"] != nil || schema["maxItems"] != nil {
                types = ["array"]
            } else if ["minLength", "maxLength", "pattern", "format"].contains(where: { schema[$0] != nil }) {
                types = ["string"]
            } else {
                return anyNode()
            }
        default: throw SchemaError("type must be a string or a list of strings", path: path)
        }
        if types.contains("number") { types.removeAll { $0 == "integer" } }
        guard !types.isEmpty else { throw SchemaError("type must not be empty", path: path) }
        if types.count == 1 { return try compile(schema, type: types[0], path: path) }
        let index = add(.anyOf([]))
        var alternatives: [Int] = []
        for type in types { alternatives.append(try compile(schema, type: type, path: path)) }
        nodes[index] = .anyOf(alternatives)
        return index
    }

    private mutating func compile(_ schema: JinjaObject, type: String, path: String) throws -> Int {
        func count(_ key: String) throws -> Int? {
            guard let value = schema[key] else { return nil }
            switch value {
            case .int(let number) where number >= 0: return number
            case .double(let number) where number >= 0 && number == number.rounded() && number < 1e15: return Int(number)
            default: throw SchemaError("\(key) must be a non-negative integer", path: path)
            }
        }
        switch type {
        case "object":
            return try compileObject(schema, path: path)
        case "array":
            if case .bool(true)? = schema["uniqueItems"] { throw SchemaError("uniqueItems is not supported for structured output", path: path) }
            let min = try count("minItems") ?? 0
            let max = try count("maxItems") ?? .max
            guard min <= max else { throw SchemaError("minItems is above maxItems", path: path) }
            guard min <= 4096 else { throw SchemaError("minItems above 4096 is not supported", path: path) }
            let index = add(.anyOf([]))
            let item: Int
            switch schema["items"] {
            case nil, .bool(true)?: item = anyNode()
            case .array?: throw SchemaError("items as a list (tuple validation) is not supported", path: path)
            case let value?: item = try compile(value, path: "\(path)/items")
            }
            nodes[index] = .array(item: item, min: min, max: max)
            return index
        case "string":
            var pattern: String?
            if let value = schema["pattern"] {
                guard case .string(let text) = value else { throw SchemaError("pattern must be a string", path: path) }
                pattern = text
            }
            if case .string(let format)? = schema["format"] {
                guard let formatPattern = Self.formats[format] else {
                    let known = Self.formats.keys.sorted().joined(separator: ", ")
                    throw SchemaError("format \"\(format)\" is not supported for structured output (supported: \(known))", path: path)
                }
                guard pattern == nil else { throw SchemaError("format together with pattern is not supported", path: path) }
                pattern = formatPattern
            }
            let min = try count("minLength") ?? 0
            let max = try count("maxLength") ?? .max
            guard min <= max else { throw SchemaError("minLength is above maxLength", path: path) }
            guard min <= 4096 else { throw SchemaError("minLength above 4096 is not supported", path: path) }
            if let pattern {
                guard schema["minLength"] == nil && schema["maxLength"] == nil else {
                    throw SchemaError("minLength or maxLength together with pattern (or format) is not supported", path: path)
                }
                return add(.string(min: 0, max: .max, pattern: try PatternAutomaton(pattern: pattern, path: "\(path)/pattern")))
            }
            return add(.string(min: min, max: max, pattern: nil))
        case "number", "integer":
            return add(.number(integer: type == "integer"))
        case "boolean":
            return add(.literal(.init([Array("true".utf8), Array("false".utf8)])))
        case "null":
            return add(.literal(.init([Array("null".utf8)])))
        default:
            throw SchemaError("unknown type \"\(type)\"", path: path)
        }
    }

    private mutating func compileObject(_ schema: JinjaObject, path: String) throws -> Int {
        let index = add(.anyOf([]))
        var required: [String] = []
        if let value = schema["required"] {
            guard case .array(let list) = value else { throw SchemaError("required must be a list of strings", path: path) }
            required = try list.map {
                guard case .string(let name) = $0 else { throw SchemaError("required must be a list of strings", path: path) }
                return name
            }
        }
        var declared: [(String, JinjaValue)] = []
        if let value = schema["properties"] {
            guard case .object(let properties) = value else { throw SchemaError("properties must be an object", path: path) }
            declared = properties.pairs.map { ($0.key, $0.value) }
        }
        let additional = schema["additionalProperties"]
        if declared.isEmpty && required.isEmpty {
            switch additional {
            case nil, .bool(true)?: nodes[index] = .map(value: anyNode())
            case .bool(false)?: nodes[index] = .object([])
            case let value?: nodes[index] = .map(value: try compile(value, path: "\(path)/additionalProperties"))
            }
            return index
        }
        var properties: [JSONGrammar.Property] = []
        for (name, value) in declared {
            let node = try compile(value, path: "\(path)/properties/\(name)")
            properties.append(.init(key: try Self.text(.string(name), path: path), value: node, required: required.contains(name)))
        }
        for name in required where !declared.contains(where: { $0.0 == name }) {
            let node: Int
            switch additional {
            case nil, .bool(true)?: node = anyNode()
            case .bool(false)?: throw SchemaError("required property \"\(name)\" is not allowed by additionalProperties false", path: path)
            case let value?: node = try compile(value, path: "\(path)/additionalProperties")
            }
            properties.append(.init(key: try Self.text(.string(name), path: path), value: node, required: true))
        }
        nodes[index] = .object(properties)
        return index
    }

    /// A `$ref` within the document: `#` or a JSON pointer such as `#/$defs/Item`.
    private mutating func resolve(_ reference: String, path: String) throws -> Int {
        if let known = refs[reference] { return known }
        guard reference.hasPrefix("#") else { throw SchemaError("$ref \"\(reference)\" outside the document is not supported", path: path) }
        var target = document
        let nowhere = SchemaError("$ref \"\(reference)\" points nowhere", path: path)
        for raw in reference.dropFirst().split(separator: "/", omittingEmptySubsequences: true) {
            let token = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch target {
            case .object(let object):
                guard let next = object[token.removingPercentEncoding ?? token] else { throw nowhere }
                target = next
            case .array(let list):
                guard let position = Int(token), list.indices.contains(position) else { throw nowhere }
                target = list[position]
            default:
                throw nowhere
            }
        }
        // A placeholder first, so that a schema referring to itself ends up pointing at its own node.
        let index = add(.anyOf([]))
        refs[reference] = index
        let node = try compile(target, path: reference)
        nodes[index] = .anyOf([node])
        return index
    }

    /// Whether `value` has the schema's `type` (any when there is none).
    static func matchesType(_ value: JinjaValue, _ type: JinjaValue?) -> Bool {
        let names: [String]
        switch type {
        case .string(let name)?: names = [name]
        case .array(let list)?: names = list.compactMap { if case .string(let name) = $0 { name } else { nil } }
        default: return true
        }
        return names.contains { name in
            switch (name, value) {
            case ("string", .string), ("boolean", .bool), ("null", .none), ("object", .object), ("array", .array): true
            case ("integer", .int), ("number", .int), ("number", .double): true
            case ("integer", .double(let number)): number == number.rounded()
            default: false
            }
        }
    }

    /// The compact JSON text of an `enum` or `const` value.
    static func text(_ value: JinjaValue, path: String) throws -> [UInt8] {
        var options = JinjaValue.JSONOptions()
        options.separators = (",", ":")
        do {
            return Array(try value.pythonJSON(options).utf8)
        } catch {
            throw SchemaError("the value \(value) cannot be written as JSON", path: path)
        }
    }
}
