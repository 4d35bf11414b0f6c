import Foundation
import ModelText
import Testing

/// One conversation of templates.json with what transformers rendered for it.
struct TemplateCase: CustomTestStringConvertible, Sendable {
    var template: String
    var name: String
    var messages: [JinjaValue]
    var tools: [JinjaValue]?
    var addGenerationPrompt: Bool
    var extra: [String: JinjaValue]
    var bosToken: String?
    var eosToken: String?
    var expected: String?
    var error: String?
    /// The prompt ids of `expected` under the template's tokenizer.
    var ids: [Int]?

    var testDescription: String { "\(template) \(name)" }

    /// The cases, parsed with our order-keeping JSON parser (tojson must see keys in file order).
    static let all: [TemplateCase] = {
        guard let data = try? Data(contentsOf: TextFixtures.url("templates.json")),
            case .object(let root)? = try? JinjaValue(json: data), case .array(let cases)? = root["cases"]
        else { return [] }
        return cases.compactMap { value in
            guard case .object(let object) = value, case .string(let template)? = object["template"],
                case .string(let name)? = object["name"], case .array(let messages)? = object["messages"]
            else { return nil }
            func string(_ key: String) -> String? { if case .string(let text)? = object[key] { text } else { nil } }
            var extra: [String: JinjaValue] = [:]
            if case .object(let values)? = object["extra"] { for (key, value) in values.pairs { extra[key] = value } }
            let tools: [JinjaValue]? = if case .array(let items)? = object["tools"] { items } else { nil }
            var ids: [Int]?
            if case .array(let values)? = object["ids"] {
                ids = values.compactMap { if case .int(let id) = $0 { id } else { nil } }
            }
            return TemplateCase(
                template: template, name: name, messages: messages, tools: tools,
                addGenerationPrompt: object["add_generation_prompt"] == .bool(true), extra: extra,
                bosToken: string("bos_token"), eosToken: string("eos_token"), expected: string("expected"), error: string("error"),
                ids: ids)
        }
    }()

    /// The time the goldens pinned `strftime_now` to (naive local time in Python; UTC here).
    static let now: Date = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: DateComponents(year: 2026, month: 3, day: 7, hour: 9, minute: 5))!
    }()
}

@Suite("Chat templates against transformers")
struct ChatTemplateGoldenTests {
    @Test("the goldens cover every real template")
    func coverage() {
        let templates = Set(TemplateCase.all.map(\.template))
        #expect(templates == ["qwen2.5", "qwen3", "llama3.1", "llama3.2"])
        #expect(TemplateCase.all.count >= 30)
        #expect(TemplateCase.all.contains { $0.tools != nil && $0.expected != nil })
    }

    @Test("renders byte-identically to transformers", arguments: TemplateCase.all)
    func golden(_ testCase: TemplateCase) throws {
        let source = try String(contentsOf: TextFixtures.url("templates/\(testCase.template).jinja"), encoding: .utf8)
        let template = try ChatTemplate(source: source, bosToken: testCase.bosToken, eosToken: testCase.eosToken)
        let render = {
            try template.render(
                messages: testCase.messages, tools: testCase.tools, addGenerationPrompt: testCase.addGenerationPrompt,
                extra: testCase.extra, now: TemplateCase.now, timeZone: TimeZone(identifier: "UTC")!)
        }
        if let expected = testCase.expected {
            let rendered = try render()
            #expect(Array(rendered.utf8) == Array(expected.utf8), "\(rendered.debugDescription)\n!=\n\(expected.debugDescription)")
        } else {
            // Python raised; we must raise too, with the same Python-worded reason.
            let error = try #require(throws: TemplateError.self) { try render() }
            #expect(error.message == testCase.error, "\(error)")
        }
    }

    @Test("rendered prompts tokenize to transformers' prompt ids", arguments: TemplateCase.all.filter { $0.ids != nil })
    func promptIDs(_ testCase: TemplateCase) throws {
        let source = try String(contentsOf: TextFixtures.url("templates/\(testCase.template).jinja"), encoding: .utf8)
        let template = try ChatTemplate(source: source, bosToken: testCase.bosToken, eosToken: testCase.eosToken)
        let prompt = try template.render(
            messages: testCase.messages, tools: testCase.tools, addGenerationPrompt: testCase.addGenerationPrompt,
            extra: testCase.extra, now: TemplateCase.now, timeZone: TimeZone(identifier: "UTC")!)
        let tokenizer = try TextFixtures.tokenizer(testCase.template.hasPrefix("qwen") ? "qwen2" : "llama3")
        let ids = try tokenizer.encode(prompt)
        #expect(ids == testCase.ids)
        // The role markers are single special tokens, not text.
        let marker = try #require(tokenizer.addedTokenID(testCase.template.hasPrefix("qwen") ? "<|im_start|>" : "<|start_header_id|>"))
        #expect(ids.contains(marker))
    }

    @Test("loads a template from a model directory: chat_template.jinja, string, or named list")
    func loadFromDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chat-template-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("tokenizer_config.json")
        let messages: [JinjaValue] = [["role": "user", "content": "hi"]]

        try Data(
            #"{"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{ bos_token }}D{{ messages[0].content }}{{ eos_token }}"}, {"name": "tool_use", "template": "T"}]}"#
                .utf8
        ).write(to: config)
        #expect(try ChatTemplate(directory: directory).render(messages: messages, addGenerationPrompt: false) == "<s>Dhi</s>")
        #expect(try ChatTemplate(directory: directory, name: "tool_use").render(messages: messages, addGenerationPrompt: false) == "T")
        #expect(throws: TemplateError.self) { try ChatTemplate(directory: directory, name: "rag") }

        try Data(#"{"chat_template": "S{{ messages|length }}"}"#.utf8).write(to: config)
        #expect(try ChatTemplate(directory: directory).render(messages: messages, addGenerationPrompt: false) == "S1")

        try "J{{ add_generation_prompt }}\n".write(to: directory.appendingPathComponent("chat_template.jinja"), atomically: true, encoding: .utf8)
        #expect(try ChatTemplate(directory: directory).render(messages: messages, addGenerationPrompt: true) == "JTrue")

        try FileManager.default.removeItem(at: directory.appendingPathComponent("chat_template.jinja"))
        try Data("{}".utf8).write(to: config)
        let error = try #require(throws: TemplateError.self) { try ChatTemplate(directory: directory) }
        #expect(error.code == .missingTemplate)
    }
}
