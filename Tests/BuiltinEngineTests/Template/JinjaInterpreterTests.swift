import Foundation
import ModelText
import Testing

/// One small template of jinja-cases.json, with what transformers' environment made of it.
struct JinjaCase: CustomTestStringConvertible, Sendable {
    var name: String
    var source: String
    var variables: [String: JinjaValue]
    var expected: String?
    var error: String?

    var testDescription: String { name }

    static let all: [JinjaCase] = {
        guard let data = try? Data(contentsOf: TextFixtures.url("jinja-cases.json")), case .array(let cases)? = try? JinjaValue(json: data) else {
            return []
        }
        return cases.compactMap { value in
            guard case .object(let object) = value, case .string(let name)? = object["name"], case .string(let source)? = object["source"],
                case .object(let variables)? = object["variables"]
            else { return nil }
            var scope: [String: JinjaValue] = [:]
            for (key, value) in variables.pairs { scope[key] = value }
            let expected: String? = if case .string(let text)? = object["expected"] { text } else { nil }
            let error: String? = if case .string(let text)? = object["error"] { text } else { nil }
            return JinjaCase(name: name, source: source, variables: scope, expected: expected, error: error)
        }
    }()
}

@Suite("Jinja interpreter")
struct JinjaInterpreterTests {
    @Test("every feature case is present")
    func coverage() {
        #expect(JinjaCase.all.count >= 30)
    }

    @Test("renders each feature like jinja2", arguments: JinjaCase.all)
    func feature(_ testCase: JinjaCase) throws {
        let template = try JinjaTemplate(testCase.source)
        let render = { try template.render(testCase.variables, now: TemplateCase.now, timeZone: TimeZone(identifier: "UTC")!) }
        if let expected = testCase.expected {
            let rendered = try render()
            #expect(Array(rendered.utf8) == Array(expected.utf8), "\(rendered.debugDescription) != \(expected.debugDescription)")
        } else {
            let error = try #require(throws: TemplateError.self) { try render() }
            #expect(error.message.hasPrefix(testCase.error ?? "?"), "\(error)")
        }
    }

    @Test("raise_exception is its own error code carrying the template's message")
    func raised() throws {
        let template = try JinjaTemplate("{{ raise_exception('only user and assistant roles') }}")
        let error = try #require(throws: TemplateError.self) { try template.render([:]) }
        #expect(error.code == .raised)
        #expect(error.description.contains("only user and assistant roles"))
    }

    @Test(
        "syntax errors give line and column",
        arguments: [
            ("{% if x %}\nunclosed", 2, "expected 'elif' or 'else' or 'endif'"),
            ("ok\n  {{ a + }}", 2, "unexpected '}}'"),
            ("{% for x in y %}{% endif %}", 1, "expected"),
            ("{{ 'unterminated }}", 1, "unterminated string"),
            ("line1\nline2 {{ a b }}", 2, "expected '}}'"),
            ("{% endfor %}", 1, "no open block"),
        ])
    func syntaxErrors(source: String, line: Int, message: String) throws {
        let error = try #require(throws: TemplateError.self) { try JinjaTemplate(source) }
        #expect(error.code == .syntax)
        #expect(error.line == line, "\(error)")
        #expect(error.column != nil)
        #expect(error.description.contains(message), "\(error)")
    }

    @Test(
        "unsupported syntax is named",
        arguments: [
            ("{% include 'x' %}", "'include' tag"),
            ("{{ x|wordwrap }}", "'wordwrap' filter"),
            ("{{ x is escaped }}", "'escaped' test"),
            ("{{ 'a'.zfill(3) }}", "string method 'zfill'"),
            ("{{ {'a': 1}.update({}) }}", "mapping method 'update'"),
        ])
    func unsupported(source: String, name: String) throws {
        do {
            let template = try JinjaTemplate(source)
            _ = try template.render(["x": "v"])
            Issue.record("\(source) rendered")
        } catch let error as TemplateError {
            #expect(error.code == .unsupported || error.code == .runtime, "\(error)")
            #expect(error.description.contains(name), "\(error)")
        }
    }

    @Test("runtime errors point at the expression")
    func runtimeLocation() throws {
        let template = try JinjaTemplate("line one\n{{ 'a' + 1 }}")
        let error = try #require(throws: TemplateError.self) { try template.render([:]) }
        #expect(error.code == .runtime)
        #expect(error.line == 2)
        #expect(error.column == 8)
    }

    @Test("integer overflow is reported, not wrapped")
    func overflow() throws {
        let template = try JinjaTemplate("{{ 9223372036854775807 + 1 }}")
        let error = try #require(throws: TemplateError.self) { try template.render([:]) }
        #expect(error.description.contains("exceeds 64 bits"))
    }

    @Test("truncated and damaged real templates fail with errors, never crash", arguments: ["qwen2.5", "qwen3", "llama3.1", "llama3.2"])
    func damagedTemplates(name: String) throws {
        let source = Array(try String(contentsOf: TextFixtures.url("templates/\(name).jinja"), encoding: .utf8).unicodeScalars)
        let messages: [JinjaValue] = [["role": "user", "content": "hi"]]
        var rejected = 0
        for cut in stride(from: 0, to: source.count, by: 7) {
            for damaged in [Array(source[..<cut]), Array(source[..<cut] + ["{", "%"] + source[cut...])] {
                do {
                    let template = try ChatTemplate(source: String(String.UnicodeScalarView(damaged)))
                    _ = try? template.render(messages: messages, addGenerationPrompt: true)
                } catch is TemplateError {
                    rejected += 1
                }
            }
        }
        // Most cuts land inside a tag or block: the parser must have said so.
        #expect(rejected > source.count / 7)
    }

    @Test("tojson keeps insertion order and Python's separators")
    func tojsonOrder() throws {
        let value = try JinjaValue(json: Data(#"{"zeta": 1, "alpha": {"b": [1, 2.5, "é"], "a": null}}"#.utf8))
        #expect(try value.pythonJSON() == #"{"zeta": 1, "alpha": {"b": [1, 2.5, "é"], "a": null}}"#)
        #expect(
            try value.pythonJSON(indent: 1) == "{\n \"zeta\": 1,\n \"alpha\": {\n  \"b\": [\n   1,\n   2.5,\n   \"é\"\n  ],\n  \"a\": null\n }\n}")
    }
}
