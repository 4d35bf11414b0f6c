import Foundation
import Testing

@testable import Daemon

@Suite("JSONMembers: the gateway's one-pass reading of a request body")
struct JSONMembersTests {
    @Test("reads model and stream among nested values, strings with escapes, numbers and literals")
    func reads() throws {
        let body = #"""
             { "messages": [{"role": "user", "content": "a \"quoted\" {brace} [and] \\ \u00e9"}],
              "nested": {"model": "inner", "list": [1, -2.5e3, true, false, null, {}, []]},
              "model" : "acme/m\u00e9\ud83d\ude00\n", "stream": true, "n": 3, "temperature": 0.1 }
            """#
        let members = try #require(JSONMembers(Array(body.utf8)))
        #expect(members.string("model") == "acme/mé😀\n")
        #expect(members.bool("stream") == true && members.int("n") == 3)
        #expect(members.string("temperature") == nil && members.int("temperature") == nil && members.bool("n") == nil)
        #expect(members.object("nested")?.string("model") == "inner")
        #expect(members.string("absent") == nil)
        // Every member, read as Foundation reads them.
        let foundation = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(Set(members.ranges.keys) == Set(foundation.keys))
        #expect(foundation["model"] as? String == members.string("model"))
    }

    @Test("replacing model keeps every other byte; the new value is encoded")
    func replaces() throws {
        let body = #"{"model":"tiny","temperature":0.1,"big":12345678901234567890,"ignore_eos":true,"x":"é"}"#
        let members = try #require(JSONMembers(Array(body.utf8)))
        let replaced = String(decoding: members.replacing("model", with: JSONMembers.encode("acme/q\"w\\en\n\u{01}")), as: UTF8.self)
        #expect(replaced == #"{"model":"acme/q\"w\\en\n\u0001","temperature":0.1,"big":12345678901234567890,"ignore_eos":true,"x":"é"}"#)
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(replaced.utf8)) as? [String: Any])
        #expect(decoded["model"] as? String == "acme/q\"w\\en\n\u{01}")
        #expect(JSONMembers(Array(replaced.utf8))?.string("model") == "acme/q\"w\\en\n\u{01}")
    }

    @Test(
        "anything but one well-formed object is refused",
        arguments: [
            "", "   ", "[]", "\"model\"", "42", "null", "{", "}", "{\"model\": \"x\"", "{\"model\": \"x\"} {}", "{\"model\" \"x\"}",
            "{\"model\": \"x\",}", "{model: \"x\"}", "{\"model\": \"x\" \"stream\": true}", "{\"a\": [1, 2}", "{\"a\": {\"b\" 1}}",
            "{\"a\": tru}", "{\"a\": \"unterminated}", "{\"a\": \"raw\nnewline\"}", "{\"a\": nul}", "{\"a\": [1,]}", "{\"a\": 'x'}",
            String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
            String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000),
            String(repeating: "[", count: 64) + String(repeating: "]", count: 64),
            "{\"a\": [1 2]}", "{\"a\": [[1], [2]]]}", "{\"a\": {\"b\": 1,}}",
        ])
    func refuses(_ text: String) {
        let wrapped = text.hasPrefix("[[") ? "{\"a\": \(text)}" : text
        #expect(JSONMembers(Array(wrapped.utf8)) == nil, "\(wrapped.prefix(80))")
    }

    @Test("values nested up to the limit of 64 levels (the object counts one) are skipped without recursion")
    func nestingAtLimit() throws {
        // The body object, 59 arrays, then four levels inside `inner`: 64.
        let inner = #"{"k": [1, "]", {"x": []}], "e": {}}"#
        let deep = String(repeating: "[", count: 59) + inner + String(repeating: "]", count: 59)
        let body = #"{"a": "# + deep + #", "model": "m", "stream": true}"#
        let members = try #require(JSONMembers(Array(body.utf8)))
        #expect(members.string("model") == "m" && members.bool("stream") == true)
        #expect(members[raw: "a"].map { String(decoding: $0, as: UTF8.self) } == deep)
    }

    @Test("a repeated key keeps its last value, as Python and Foundation do")
    func repeatedKey() throws {
        let members = try #require(JSONMembers(Array(#"{"model": "first", "model": "last"}"#.utf8)))
        #expect(members.string("model") == "last")
        #expect(JSONMembers(Array("{}".utf8))?.ranges.isEmpty == true)
    }
}
