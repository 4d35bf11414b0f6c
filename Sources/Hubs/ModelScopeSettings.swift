import Foundation

/// Where ModelScope is and who we are there (docs/design/hubs.md, ModelScope).
///
/// `MODELSCOPE_ENDPOINT` (a full URL, the 2.x clients), else `https://` + `MODELSCOPE_DOMAIN` (the older
/// clients; default `www.modelscope.cn`); the token from `MODELSCOPE_API_TOKEN`.
package struct ModelScopeSettings: Sendable {
    package var endpoint: String
    package var token: String?

    package init(endpoint: String = "https://www.modelscope.cn", token: String? = nil) {
        var endpoint = endpoint
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    package static func fromEnvironment(_ environment: [String: String]) -> ModelScopeSettings {
        let endpoint: String
        if let full = environment["MODELSCOPE_ENDPOINT"], !full.isEmpty {
            endpoint = full
        } else if let domain = environment["MODELSCOPE_DOMAIN"], !domain.isEmpty {
            endpoint = domain.contains("://") ? domain : "https://" + domain
        } else {
            endpoint = "https://www.modelscope.cn"
        }
        return ModelScopeSettings(endpoint: endpoint, token: environment["MODELSCOPE_API_TOKEN"])
    }

    /// `Cookie: m_session_id=<token>` and `Authorization: Bearer <token>`, as the official clients send.
    var authHeaders: [(String, String)] {
        guard let token else { return [] }
        return [("Cookie", "m_session_id=\(token)"), ("Authorization", "Bearer \(token)")]
    }
}
