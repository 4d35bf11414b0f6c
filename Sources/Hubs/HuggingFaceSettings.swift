import Foundation

/// Where the Hugging Face hub is and who we are there, from the same variables huggingface_hub reads
/// (docs/design/hubs.md, Environment).
///
/// `HF_ENDPOINT` (default `https://huggingface.co`, trailing `/` stripped), `HF_TOKEN`, then the legacy
/// `HUGGING_FACE_HUB_TOKEN`, then the file `$HF_HOME/token` (`HF_HOME` defaults to `~/.cache/huggingface`).
package struct HuggingFaceSettings: Sendable {
    package var endpoint: String
    package var token: String?

    package init(endpoint: String = "https://huggingface.co", token: String? = nil) {
        var endpoint = endpoint
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    package static func fromEnvironment(_ environment: [String: String]) -> HuggingFaceSettings {
        let endpoint = environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        var token = environment["HF_TOKEN"].flatMap(nonEmpty) ?? environment["HUGGING_FACE_HUB_TOKEN"].flatMap(nonEmpty)
        if token == nil {
            let home =
                environment["HF_HOME"].flatMap(nonEmpty)
                ?? ((environment["HOME"].flatMap(nonEmpty) ?? NSHomeDirectory()) + "/.cache/huggingface")
            if let text = try? String(contentsOfFile: home + "/token", encoding: .utf8) {
                token = nonEmpty(text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        return HuggingFaceSettings(endpoint: endpoint, token: token)
    }
}

private func nonEmpty(_ text: String) -> String? {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    return trimmed.isEmpty ? nil : trimmed
}
