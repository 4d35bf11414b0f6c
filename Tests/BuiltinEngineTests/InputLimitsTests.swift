import Foundation
import ModelText
import Testing

/// The limits on untrusted text (JSON, chat templates, tokenizer files): input past one fails with an error that
/// names it, instead of overflowing the stack or filling memory, and input at the limit still works.
@Suite("Input limits")
struct InputLimitsTests {
    /// `depth` arrays inside one another around `inner`.
    static func nested(_ depth: Int, _ inner: String = "") -> String {
        String(repeating: "[", count: depth) + inner + String(repeating: "]", count: depth)
    }

    // MARK: JSON

    @Test("JSON nested 200,000 deep is refused by the check and by the ordered parser, naming the limit")
    func deepJSON() throws {
        let deep = Array(Self.nested(200_000).utf8)
        let checked = try #require(throws: JSONLimitError.self) { try JSONLimits.check(deep) }
        #expect(checked.message.contains("limit of 64 levels"), "\(checked)")
        let parsed = try #require(throws: TemplateError.self) { try JinjaValue(json: deep) }
        #expect(parsed.code == .invalidJSON && parsed.message.contains("limit of 64 levels"), "\(parsed)")
        // Foundation's readers, behind the check.
        #expect(throws: JSONLimitError.self) { try JSONLimits.jsonObject(with: Data(deep)) }
        #expect(throws: JSONLimitError.self) { try JSONLimits.decode([String].self, from: Data(deep)) }
    }

    @Test("JSON nested exactly 64 deep parses; 65 does not")
    func jsonAtLimit() throws {
        // An object around 63 arrays: 64 levels.
        let atLimit = Array(#"{"a": "#.utf8) + Array(Self.nested(63, "1").utf8) + Array("}".utf8)
        try JSONLimits.check(atLimit)
        var value = try JinjaValue(json: atLimit)
        var levels = 0
        while true {
            if case .object(let object) = value {
                value = try #require(object["a"])
            } else if case .array(let items) = value {
                value = try #require(items.first)
            } else {
                break
            }
            levels += 1
        }
        #expect(levels == 64 && value == .int(1))
        #expect(try JSONLimits.jsonObject(with: Data(atLimit)) is [String: Any])
        let over = Array(#"{"a": "#.utf8) + Array(Self.nested(64, "1").utf8) + Array("}".utf8)
        #expect(throws: JSONLimitError.self) { try JSONLimits.check(over) }
        #expect(throws: TemplateError.self) { try JinjaValue(json: over) }
    }

    @Test("brackets inside strings and after escaped quotes do not count as nesting")
    func stringsSkipped() throws {
        let text = #"{"a": "\"[[[[" , "b": ""# + String(repeating: "{[", count: 1000) + #""}"#
        try JSONLimits.check(Array(text.utf8))
        let value = try JinjaValue(json: Array(text.utf8))
        guard case .object(let object) = value, case .string(let b)? = object["b"] else {
            Issue.record("not an object with b: \(value)")
            return
        }
        #expect(b.count == 2000)
    }

    @Test("a high surrogate escape followed by a non-surrogate is malformed JSON, not a crash")
    func badSurrogate() throws {
        let error = try #require(throws: TemplateError.self) { try JinjaValue(json: Array(#"["\ud800\u0041"]"#.utf8)) }
        #expect(error.message.contains("surrogate"), "\(error)")
    }

    // MARK: templates

    static func render(_ source: String, _ variables: [String: JinjaValue] = [:]) throws -> String {
        try JinjaTemplate(source).render(variables, now: Date(timeIntervalSince1970: 0), timeZone: TimeZone(identifier: "UTC")!)
    }

    @Test("expressions nested past 64 levels fail to parse, naming the limit; 60 levels parse")
    func nestedExpression() throws {
        for source in [
            "{{ " + String(repeating: "(", count: 200_000) + "1" + String(repeating: ")", count: 200_000) + " }}",
            "{{ " + String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000) + " }}",
            "{{ " + String(repeating: "-", count: 1000) + "1 }}",
            "{{ " + String(repeating: "not ", count: 1000) + "1 }}",
            "{{ 1" + String(repeating: " + 1", count: 100_000) + " }}",
            "{{ x" + String(repeating: "|string", count: 1000) + " }}",
            "{{ x" + String(repeating: ".a", count: 1000) + " }}",
        ] {
            let error = try #require(throws: TemplateError.self) { try Self.render(source) }
            #expect(error.code == .syntax && error.message.contains("limit of 64 levels"), "\(error)")
        }
        let fine = "{{ " + String(repeating: "(", count: 60) + "1 + 2" + String(repeating: ")", count: 60) + " }}"
        #expect(try Self.render(fine) == "3")
    }

    @Test("block tags nested past 64 levels fail to parse; 60 levels render")
    func nestedBlocks() throws {
        let deep = String(repeating: "{% if true %}", count: 1000) + "x" + String(repeating: "{% endif %}", count: 1000)
        let error = try #require(throws: TemplateError.self) { try Self.render(deep) }
        #expect(error.message.contains("limit of 64 levels"), "\(error)")
        let loops = String(repeating: "{% for i in [1] %}", count: 1000) + String(repeating: "{% endfor %}", count: 1000)
        #expect(throws: TemplateError.self) { try Self.render(loops) }
        let fine = String(repeating: "{% if true %}", count: 60) + "x" + String(repeating: "{% endif %}", count: 60)
        #expect(try Self.render(fine) == "x")
    }

    @Test("a macro that recurses without end fails with a TemplateError naming the limit")
    func recursiveMacro() throws {
        let source = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
        let error = try #require(throws: TemplateError.self) { try Self.render(source) }
        #expect(error.message.contains("limit of 100 macro calls"), "\(error)")
        let bounded = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(50) }}"
        #expect(try Self.render(bounded).hasSuffix("4950"))
    }

    @Test("huge ranges, nested loops, repeated strings and lists, and doubling strings fail, naming the limit")
    func hugeWork() throws {
        let cases: [(String, String)] = [
            ("{% for i in range(10**9) %}{% endfor %}", "MAX_RANGE"),
            ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "limit of 1000000 loop iterations"),
            ("{{ 'x' * 10**9 }}", "limit of 64 MiB"),
            ("{{ 'x' * 9223372036854775807 }}", "limit of 64 MiB"),
            ("{{ ([1] * 100000000)|length }}", "limit of 16777216 items"),
            ("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "limit of 64 MiB"),
            ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "limit of 64 MiB of text"),
            ("{{ 'a\nb'|indent(10**9) }}", "limit of 64 MiB"),
            ("{{ [1]|tojson(indent=10**12) }}", "limit of 64 MiB"),
        ]
        for (source, limit) in cases {
            let error = try #require(throws: TemplateError.self, "\(source)") { try Self.render(source) }
            #expect(error.message.contains(limit), "\(source): \(error)")
        }
    }

    @Test("values nested without end (a list in a loop, a namespace holding itself) fail instead of overflowing")
    func deepValues() throws {
        let loop = "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}"
        let error = try #require(throws: TemplateError.self) { try Self.render(loop) }
        #expect(error.message.contains("limit of 64 levels"), "\(error)")
        let cycle = "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"
        let cycleError = try #require(throws: TemplateError.self) { try Self.render(cycle) }
        #expect(cycleError.message.contains("limit of 64 levels"), "\(cycleError)")
        // Request JSON at the limit still prints.
        let atLimit = try JinjaValue(json: Array(Self.nested(64).utf8))
        #expect(try Self.render("{{ v|tojson }}", ["v": atLimit]) == Self.nested(64))
        #expect(try Self.render("{{ v }}", ["v": atLimit]) == Self.nested(64))
    }

    @Test("integer edge cases are template errors, not traps")
    func integerEdges() throws {
        let minimum = "(-9223372036854775807 - 1)"
        for source in ["{{ -\(minimum) }}", "{{ \(minimum) // -1 }}", "{{ \(minimum)|abs }}", "{{ (10.0 ** 300)|int }}", "{{ 'nan'|float|int }}"] {
            #expect(throws: TemplateError.self, "\(source)") { try Self.render(source) }
        }
        #expect(try Self.render("{{ \(minimum) % -1 }}") == "0")
        #expect(try Self.render("{{ -7 // 2 }} {{ 7 // -2 }} {{ 9223372036854775807 // 1 }}") == "-4 -4 9223372036854775807")
    }

    // MARK: tokenizer files

    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appending(path: "limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test("a tokenizer.json nested past the limit is refused, naming it")
    func deepTokenizer() throws {
        let json = #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": "# + Self.nested(200_000) + "}"
        let error = try #require(throws: TokenizerError.self) { try Tokenizer(json: Data(json.utf8)) }
        #expect(error.code == .invalidFile && error.message.contains("limit of 64 levels"), "\(error)")
        let sequences =
            #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": "#
            + String(repeating: #"{"type": "Sequence", "pretokenizers": ["#, count: 100) + "{}" + String(repeating: "]}", count: 100) + "}"
        let sequenceError = try #require(throws: TokenizerError.self) { try Tokenizer(json: Data(sequences.utf8)) }
        #expect(sequenceError.message.contains("limit of 64 levels"), "\(sequenceError)")
    }

    @Test("a tokenizer.json or tokenizer_config.json over 64 MiB is refused before it is read, naming the limit")
    func largeFiles() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            let url = directory.appending(path: name)
            #expect(FileManager.default.createFile(atPath: url.path, contents: nil))
            let handle = try FileHandle(forWritingTo: url)
            try handle.truncate(atOffset: UInt64(JSONLimits.maxFileBytes + 1))
            try handle.close()
        }
        let error = try #require(throws: TokenizerError.self) { try Tokenizer(directory: directory) }
        #expect(error.message.contains("over the limit of 64 MiB"), "\(error)")
        let templateError = try #require(throws: TemplateError.self) { try ChatTemplate(directory: directory) }
        #expect(templateError.message.contains("over the limit of 64 MiB"), "\(templateError)")
    }
}
