import Foundation
import HTTPTypes
import Hummingbird
import ModeldAPI
import NIOCore

/// `GET /api/v1/events`: the daemon's changes as Server-Sent Events (``DaemonEventType`` lists them), so that a
/// web page or `modelctl` shows them live without polling.
///
/// Each event has an `id`; a client that reconnects with `Last-Event-ID` gets what it missed (``EventBus``).
/// A `: heartbeat` comment comes every 15 s while nothing happens. Needs an admin key once keys exist, sent as
/// `Authorization: Bearer` (browsers read the stream with `fetch`, which can send it; never put a key in a URL).
struct EventsController {
    let bus: EventBus

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.get("events", use: stream)
    }

    @Sendable func stream(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let items = bus.subscribe(after: request.headers[.lastEventID].flatMap { $0.isEmpty ? nil : $0 })
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .xAccelBuffering: "no"],
            body: ResponseBody { writer in
                // How long a browser waits before reconnecting after the stream breaks.
                try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
                for await item in items {
                    try await writer.write(ByteBuffer(string: Self.text(of: item)))
                    if case .reload(_, closes: true) = item { break }
                }
                try await writer.finish(nil)
            })
    }

    /// An item as the stream's text: `id`, `event` and one `data` line, then a blank line.
    static func text(of item: EventBus.Item) -> String {
        switch item {
        case .event(let event):
            "id: \(event.id)\nevent: \(event.type)\ndata: \(event.data)\n\n"
        case .heartbeat:
            ": heartbeat\n\n"
        case .reload(let reason, _):
            "event: \(DaemonEventType.reload.rawValue)\ndata: \(String(decoding: (try? WireJSON.encoder().encode(EventsReload(reason: reason))) ?? Data(), as: UTF8.self))\n\n"
        }
    }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
    static let xAccelBuffering = Self("X-Accel-Buffering")!
}
