import Foundation
import ModelText
import Testing

@testable import BuiltinEngine

/// Schema compilation, the byte-level matcher, the token masks and the tool-call parser. The end-to-end checks
/// (outputs validated by the `jsonschema` package through the `openai` client) are in Tests/Hostile/test_structured.py.
@Suite("Structured output")
struct StructuredOutputTests {
    static func grammar(_ schema: String) throws -> JSONGrammar {
        try JSONGrammar(schema: try JinjaValue(json: Array(schema.utf8)))
    }

    static func accepts(_ grammar: JSONGrammar, _ text: String) -> Bool {
        let state = JSONMatcher(grammar: grammar).advance(Array(text.utf8), grammar)
        return !state.isDead && (state.isComplete || state.canEnd(grammar))
    }

    static let person = """
        {"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 8},
         "age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
         "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pet"}]}},
         "required": ["name", "age"], "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}}, "required": ["kind"]}}}
        """

    @Test(
        "the matcher accepts instances of the schema and nothing else",
        arguments: [
            (#"{"name":"Al","age":3}"#, true),
            (#"{"name": "Al", "age": -30, "tags": ["a", "b"]}"#, true),
            (#"{"name":"Al","age":3,"pet":{"kind":"cat"}}"#, true),
            (#"{"name":"Al","age":3,"pet":null}"#, true),
            (#"{"name":"é日","age":0}"#, true),
            (#"{"name":"Al\n","age":1}"#, true),
            (#"{"name":"","age":3}"#, false),
            (#"{"name":"abcdefghi","age":3}"#, false),
            (#"{"age":3,"name":"Al"}"#, false),
            (#"{"name":"Al"}"#, false),
            (#"{"name":"Al","age":3.5}"#, false),
            (#"{"name":"Al","age":03}"#, false),
            (#"{"name":"Al","age":3,"tags":["a","b","a"]}"#, false),
            (#"{"name":"Al","age":3,"pet":{"kind":"dog"}}"#, false),
            (#"{"name":"Al","age":3,"extra":1}"#, false),
            (#"{"name":"Al","age":3} "#, false),
            (#" {"name":"Al","age":3}"#, false),
        ])
    func matcher(text: String, valid: Bool) throws {
        #expect(Self.accepts(try Self.grammar(Self.person), text) == valid, "\(text)")
    }

    @Test("patterns, formats, numbers and free JSON")
    func patternsAndValues() throws {
        let code = try Self.grammar(#"{"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}"#)
        #expect(Self.accepts(code, #""AB-123""#))
        #expect(!Self.accepts(code, #""AB-12""#))
        #expect(!Self.accepts(code, #""ab-123""#))
        let anywhere = try Self.grammar(#"{"type": "string", "pattern": "x+"}"#)
        #expect(Self.accepts(anywhere, #""a x b""#))
        #expect(!Self.accepts(anywhere, #""ab""#))
        let date = try Self.grammar(#"{"type": "string", "format": "date"}"#)
        #expect(Self.accepts(date, #""2026-12-06""#))
        #expect(!Self.accepts(date, #""2026-13-06""#))
        let number = try Self.grammar(#"{"type": "number"}"#)
        for text in ["0", "-1.5e+3", "12.25", "1E9"] { #expect(Self.accepts(number, text), "\(text)") }
        for text in ["01", "1.", "-", ".5", "1e", "1e999", "-9e-400"] { #expect(!Self.accepts(number, text), "\(text)") }
        #expect(Self.accepts(number, "999999999999999e99"), "the largest number the mask allows is a finite double")
        let any = JSONGrammar()
        #expect(Self.accepts(any, #"{"a": [1, {"b": null}, "x", true], "c": {}}"#))
        #expect(!Self.accepts(any, #"[1]"#))
        let tree = try Self.grammar(##"{"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}, "required": ["kids"]}"##)
        #expect(Self.accepts(tree, #"{"kids":[{"kids":[]},{"kids":[{"kids":[]}]}]}"#))
        #expect(tree.shortestOutput == #"{"kids":[]}"#.utf8.count)
    }

    @Test(
        "unsupported schema features are errors that name them",
        arguments: [
            (#"{"type": "integer", "minimum": 0}"#, "\"minimum\""),
            (#"{"oneOf": [{"type": "string"}]}"#, "\"oneOf\""),
            (#"{"not": {"type": "string"}}"#, "\"not\""),
            (#"{"type": "array", "uniqueItems": true}"#, "uniqueItems"),
            (#"{"type": "string", "format": "email"}"#, "format \"email\""),
            (#"{"$ref": "other.json#/a"}"#, "outside the document"),
            (##"{"$ref": "#/$defs/missing"}"##, "points nowhere"),
            (#"{"type": "string", "pattern": "^(?=a)"}"#, "pattern group (?="),
            (#"{"type": "string", "pattern": "^\\p{L}$"}"#, "pattern escape \\p"),
            (#"{"type": "string", "pattern": "^é$"}"#, "matches no string of printable ASCII"),
            (##"{"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}"##, "no finite instance"),
            (#"{"type": "array", "items": [{"type": "string"}]}"#, "tuple"),
            (#"{"type": "object", "properties": {"a": {"type": "string", "maxLength": 2, "minLength": 3}}}"#, "minLength is above maxLength"),
            (#"false"#, "allows no value"),
        ])
    func unsupported(schema: String, message: String) throws {
        let error = try #require(throws: SchemaError.self) { try Self.grammar(schema) }
        #expect(error.message.contains(message), "\(error.message)")
    }

    static func tinyTokenizer() throws -> Tokenizer {
        try Tokenizer(directory: EngineServerTests.fixture())
    }

    /// Random tokens drawn from the masks only, with every budget from the shortest output up: the text always
    /// completes a valid instance within the budget.
    @Test("random walks over the masks always close the JSON within the token budget")
    func masksCloseInTime() throws {
        let tokenizer = try Self.tinyTokenizer()
        let trie = TokenTrie(tokenizer: tokenizer)
        let grammar = try Self.grammar(Self.person)
        var random = SeededGenerator(seed: 11)
        for budget in grammar.shortestOutput..<(grammar.shortestOutput + 40) {
            for _ in 0..<3 {
                let constraint = JSONConstraint(grammar: grammar, vocabulary: trie)
                var ids: [Int] = []
                while !constraint.isComplete && ids.count < budget {
                    let mask = constraint.mask(budget: budget - ids.count, size: tokenizer.vocabularySize)
                    let allowed = (0..<tokenizer.vocabularySize).filter { mask[$0] }
                    #expect(!allowed.isEmpty || constraint.canEnd, "no token allowed after \(ids)")
                    if allowed.isEmpty { break }
                    let id = allowed[Int(random.next() % UInt64(allowed.count))]
                    constraint.accept(Int32(id))
                    ids.append(id)
                }
                let text = try tokenizer.decode(ids)
                #expect(Self.accepts(grammar, text), "budget \(budget): \(text)")
                #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil, "\(text)")
            }
        }
    }

    @Test("inside strings, the precomputed masks equal the trie walk's, with and without a tight budget")
    func stringFastPath() throws {
        let tokenizer = try Self.tinyTokenizer()
        let trie = TokenTrie(tokenizer: tokenizer)
        let grammar = try Self.grammar(
            #"{"type": "object", "properties": {"a": {"type": "string", "minLength": 2, "maxLength": 5}, "b": {"type": "object"}}}"#)
        for prefix in [#"{"a":""#, #"{"a":"x"#, #"{"a":"xyz"#, #"{"a":"xy\n"#, #"{"a":"é"#, #"{"a":"xy","b":{""#, #"{"a":"xy","b":{"k"#] {
            let constraint = JSONConstraint(grammar: grammar, vocabulary: trie)
            for id in try tokenizer.encode(prefix) { constraint.accept(Int32(id)) }
            #expect(constraint.state.freeString(grammar) != nil, "\(prefix)")
            for budget in [nil, 3, 5, 8, 20] {
                let fast = constraint.compute(budget: budget, size: tokenizer.vocabularySize)
                let walked = constraint.compute(budget: budget, size: tokenizer.vocabularySize, fastStrings: false)
                #expect(fast.mask == walked.mask && fast.worstClose == walked.worstClose, "\(prefix), budget \(budget ?? 0)")
                if budget.map({ $0 > constraint.state.bytesToClose(grammar) }) ?? true {
                    #expect(!fast.mask.isEmpty, "\(prefix), budget \(budget ?? 0)")
                }
            }
        }
    }

    @Test("tool calls are parsed from Hermes tags and Llama 3 JSON, the same however the text is split")
    func toolCallParsing() {
        let hermes =
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>"
        let wanted: [ToolCallParser.Event] = [
            .content("Let me check.\n"), .call(ToolCall(name: "get_weather", arguments: #"{"city":"Paris","days":2}"#)),
            .call(ToolCall(name: "time", arguments: "{}")),
        ]
        let cases: [(ToolCallFormat, String, [ToolCallParser.Event])] = [
            (.hermes, hermes, wanted),
            (.hermes, "no calls <tool_ here", [.content("no calls <tool_ here")]),
            (.hermes, "<tool_call>\n{not json}\n</tool_call>", [.content("<tool_call>\n{not json}\n</tool_call>")]),
            (.hermes, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}", [.call(ToolCall(name: "f", arguments: #"{"a":1}"#))]),
            (.llamaJSON, " {\"name\": \"f\", \"parameters\": {\"x\": [1]}}", [.call(ToolCall(name: "f", arguments: #"{"x":[1]}"#))]),
            (.llamaJSON, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}", [.call(ToolCall(name: "f", arguments: "{}"))]),
            (.llamaJSON, "{\"answer\": 42}", [.content("{\"answer\": 42}")]),
            (.llamaJSON, "Plain {text}", [.content("Plain {text}")]),
        ]
        for (format, text, expected) in cases {
            for split in 0...text.count {
                var parser = ToolCallParser(format: format)
                let events = parser.feed(String(text.prefix(split))) + parser.feed(String(text.dropFirst(split))) + parser.finish()
                #expect(Self.merged(events) == expected, "split at \(split) of \(text)")
            }
        }
    }

    /// Adjacent content events joined: how they are split is the parser's business.
    static func merged(_ events: [ToolCallParser.Event]) -> [ToolCallParser.Event] {
        var result: [ToolCallParser.Event] = []
        for event in events {
            if case .content(let piece) = event, case .content(let previous)? = result.last {
                result[result.count - 1] = .content(previous + piece)
            } else {
                result.append(event)
            }
        }
        return result
    }
}
