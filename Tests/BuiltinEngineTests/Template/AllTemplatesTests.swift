import Foundation
import ModelText
import Testing

/// One template shipped with llama.cpp and one conversation, with what transformers rendered for it.
struct ShippedTemplate: CustomTestStringConvertible, Sendable {
    var file: String
    var conversation: String
    var source: String
    var messages: [JinjaValue]
    var tools: [JinjaValue]?
    var expected: String?
    var error: String?

    var testDescription: String { "\(file) \(conversation)" }

    static let all: [ShippedTemplate] = {
        guard let data = try? Data(contentsOf: TextFixtures.url("all-templates.json")), case .object(let root)? = try? JinjaValue(json: data),
            case .object(let sources)? = root["sources"], case .array(let cases)? = root["cases"]
        else { return [] }
        return cases.compactMap { value in
            guard case .object(let object) = value, case .string(let file)? = object["file"],
                case .string(let conversation)? = object["conversation"],
                case .string(let source)? = sources[file], case .array(let messages)? = object["messages"]
            else { return nil }
            let tools: [JinjaValue]? = if case .array(let items)? = object["tools"] { items } else { nil }
            let expected: String? = if case .string(let text)? = object["expected"] { text } else { nil }
            let error: String? = if case .string(let text)? = object["error"] { text } else { nil }
            return ShippedTemplate(
                file: file, conversation: conversation, source: source, messages: messages, tools: tools, expected: expected, error: error)
        }
    }()

    /// Cases that need what the interpreter deliberately lacks, with the reason that must be given.
    static let knownUnsupported: [String: String] = [
        "ByteDance-Seed-OSS.jinja plain": "dictionary keys must be strings",
        "ByteDance-Seed-OSS.jinja tools": "dictionary keys must be strings",
        "ByteDance-Seed-OSS.jinja reasoning": "dictionary keys must be strings",
    ]

    /// Cases where Python's object model shows through and we knowingly differ: markupsafe's `Markup`
    /// (`"..."|safe + x` HTML-escapes x) and generator objects (`map` results are lists here, so `tojson`
    /// of one succeeds where Python fails).
    static let knownDifferent: Set<String> = [
        "meetkai-functionary-medium-v3.1.jinja tools",
        "llama-cpp-deepseek-r1.jinja tools",
    ]
}

@Suite("Every template shipped with llama.cpp")
struct AllTemplatesTests {
    @Test("the fixture lists the shipped templates")
    func coverage() {
        #expect(ShippedTemplate.all.count >= 180)
        #expect(ShippedTemplate.all.filter { $0.expected != nil }.count >= 150)
    }

    @Test("renders like transformers, or fails where Python fails", arguments: ShippedTemplate.all)
    func render(_ shipped: ShippedTemplate) throws {
        let name = shipped.testDescription
        let render = {
            try ChatTemplate(source: shipped.source, bosToken: "<s>", eosToken: "</s>").render(
                messages: shipped.messages, tools: shipped.tools, addGenerationPrompt: true, now: TemplateCase.now,
                timeZone: TimeZone(identifier: "UTC")!)
        }
        if let reason = ShippedTemplate.knownUnsupported[name] {
            let error = try #require(throws: TemplateError.self) { try render() }
            #expect(error.code == .unsupported)
            #expect(error.description.contains(reason), "\(error)")
        } else if ShippedTemplate.knownDifferent.contains(name) {
            // Still must not crash or throw an unsupported-syntax error.
            do { _ = try render() } catch let error as TemplateError { #expect(error.code != .unsupported && error.code != .syntax, "\(error)") }
        } else if let expected = shipped.expected {
            let rendered = try render()
            #expect(Array(rendered.utf8) == Array(expected.utf8), "\(rendered.debugDescription)\n!=\n\(expected.debugDescription)")
        } else {
            // Python raised (the template rejects the conversation, or recursed without end): so must we,
            // and not for lack of a feature.
            let error = try #require(throws: TemplateError.self) { try render() }
            #expect(error.code == .raised || error.code == .runtime, "\(error) vs Python: \(shipped.error ?? "")")
        }
    }
}
