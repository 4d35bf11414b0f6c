import Foundation
import Testing

@testable import Engine

/// One template shipped with llama.cpp, and what transformers rendered for a plain conversation.
struct ShippedTemplate: CustomTestStringConvertible, Sendable {
    var file: String
    var source: String
    var messages: [JinjaValue]
    var expected: String?
    var error: String?

    var testDescription: String { file }

    static let all: [ShippedTemplate] = {
        guard let data = try? Data(contentsOf: TextFixtures.url("all-templates.json")), case .array(let cases)? = try? JinjaValue(json: data) else {
            return []
        }
        return cases.compactMap { value in
            guard case .object(let object) = value, case .string(let file)? = object["file"], case .string(let source)? = object["source"],
                case .array(let messages)? = object["messages"]
            else { return nil }
            let expected: String? = if case .string(let text)? = object["expected"] { text } else { nil }
            let error: String? = if case .string(let text)? = object["error"] { text } else { nil }
            return ShippedTemplate(file: file, source: source, messages: messages, expected: expected, error: error)
        }
    }()

    /// Templates that need what the interpreter deliberately lacks, with the reason it must give.
    static let knownUnsupported: [String: String] = [
        "ByteDance-Seed-OSS.jinja": "dictionary keys must be strings"
    ]
}

@Suite("Every template shipped with llama.cpp")
struct AllTemplatesTests {
    @Test("the fixture lists the shipped templates")
    func coverage() {
        #expect(ShippedTemplate.all.count >= 60)
    }

    @Test("renders like transformers, or fails for a named reason", arguments: ShippedTemplate.all)
    func render(_ shipped: ShippedTemplate) throws {
        let render = {
            try ChatTemplate(source: shipped.source, bosToken: "<s>", eosToken: "</s>")
                .render(messages: shipped.messages, addGenerationPrompt: true, now: TemplateCase.now, timeZone: TimeZone(identifier: "UTC")!)
        }
        if let reason = ShippedTemplate.knownUnsupported[shipped.file] {
            let error = try #require(throws: TemplateError.self) { try render() }
            #expect(error.code == .unsupported)
            #expect(error.description.contains(reason), "\(error)")
        } else if let expected = shipped.expected {
            let rendered = try render()
            #expect(Array(rendered.utf8) == Array(expected.utf8), "\(rendered.debugDescription)\n!=\n\(expected.debugDescription)")
        } else {
            let error = try #require(throws: TemplateError.self) { try render() }
            #expect(error.message.hasPrefix(shipped.error ?? "?"), "\(error) vs Python: \(shipped.error ?? "")")
        }
    }
}
