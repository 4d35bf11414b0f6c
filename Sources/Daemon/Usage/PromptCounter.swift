import Foundation
import ModelText
import NIOCore

/// Counts the prompt of an OpenAI request with its model's own tokenizer and chat template, for a reply whose
/// backend gave no count (a stream without `stream_options.include_usage`). Runs in the usage writer's task, never
/// on an event loop.
struct PromptCounter: Sendable {
    let tokenizers = TokenizerCache(capacity: 4)

    /// The prompt tokens of `body` sent to `route`; nil when they cannot be counted (no tokenizer or template, a body
    /// of another shape, a route without a prompt).
    func count(body: ByteBuffer, route: String, modelPath: String) async -> Int? {
        guard case .object(let object)? = try? JinjaValue(json: Array(body.readableBytesView)),
            let entry = try? await tokenizers.load(modelPath)
        else { return nil }
        switch (route, object["prompt"], object["messages"]) {
        case ("/v1/chat/completions", _, .array(let messages)?):
            var tools: [JinjaValue]?
            if case .array(let list)? = object["tools"], !list.isEmpty { tools = list }
            guard let template = try? entry.template.get(),
                let text = try? template.render(messages: messages, tools: tools, addGenerationPrompt: true)
            else { return nil }
            return try? entry.tokenizer.encode(text).count
        case ("/v1/completions", .string(let prompt)?, _):
            return try? entry.tokenizer.encode(prompt).count
        case ("/v1/completions", .array(let prompts)?, _):
            var total = 0
            for case .string(let prompt) in prompts {
                guard let count = try? entry.tokenizer.encode(prompt).count else { return nil }
                total += count
            }
            return total
        default:
            return nil
        }
    }
}
