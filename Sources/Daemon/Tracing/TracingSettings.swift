import Foundation

/// Where the daemon's spans go (docs/tracing.md): a collector that takes OTLP over HTTP with protobuf bodies.
///
/// The `otlp_endpoint` setting wins; without it, OpenTelemetry's own variables are read as every OpenTelemetry
/// SDK reads them: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the URL spans are posted to), then
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces` appended). `OTEL_SDK_DISABLED=true` turns tracing off.
package struct TracingSettings: Sendable, Equatable {
    /// The URL spans are posted to, ending in `/v1/traces` unless OpenTelemetry's traces variable named another.
    package var tracesURL: String
    /// What named it: `otlp_endpoint`, or the variable.
    package var source: String
    /// The spans' `service.name`: `OTEL_SERVICE_NAME`, else `modeld`.
    package var serviceName: String

    /// OpenTelemetry's variables that name the collector, in the order they are read.
    package static let endpointVariables = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
}

extension TracingSettings {
    /// - Parameter setting: the `otlp_endpoint` setting: the collector's base URL (`http://collector:4318`), or
    ///   the whole traces URL (ending in `/v1/traces`).
    /// - Returns: nil when tracing is off (nothing names a collector, or `OTEL_SDK_DISABLED=true`).
    /// - Throws: ``ConfigurationError`` for a value that is not an `http` or `https` URL, or one with credentials.
    package init?(setting: String?, environment: [String: String]) throws {
        if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return nil }
        let url: String
        if let setting, !setting.isEmpty {
            source = "otlp_endpoint"
            url = try Self.checked(setting, key: source, appendingPath: true)
        } else if let value = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !value.isEmpty {
            source = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            url = try Self.checked(value, key: source, appendingPath: false)
        } else if let value = environment["OTEL_EXPORTER_OTLP_ENDPOINT"], !value.isEmpty {
            source = "OTEL_EXPORTER_OTLP_ENDPOINT"
            url = try Self.checked(value, key: source, appendingPath: true)
        } else {
            return nil
        }
        tracesURL = url
        serviceName = environment["OTEL_SERVICE_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "modeld"
    }

    /// The URL spans are posted to: `text` itself, or with `/v1/traces` after its path unless it ends so already.
    private static func checked(_ text: String, key: String, appendingPath: Bool) throws -> String {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty, url.query == nil
        else {
            throw ConfigurationError(key: key, problem: "\"\(text)\" is not an http or https URL such as http://127.0.0.1:4318")
        }
        guard url.user == nil, url.password == nil else {
            // The endpoint is logged at start-up: credentials belong in OTEL_EXPORTER_OTLP_HEADERS.
            throw ConfigurationError(key: key, problem: "the URL must not hold credentials; put them in OTEL_EXPORTER_OTLP_HEADERS")
        }
        guard appendingPath, !url.path.hasSuffix("/v1/traces") else { return text }
        var base = text
        while base.hasSuffix("/") { base.removeLast() }
        return base + "/v1/traces"
    }
}
