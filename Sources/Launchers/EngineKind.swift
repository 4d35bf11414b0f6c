/// The engines modeld launches as supervised children.
package enum EngineKind: String, Sendable, Codable, CaseIterable {
    case builtin, vllm, sglang, ollama, llamacpp
}
