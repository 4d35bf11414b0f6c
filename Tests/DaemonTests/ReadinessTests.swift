import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import Daemon

@Suite("GET /readiness")
struct ReadinessTests {
    @Test("503 with the reason until every listener accepts and the recorded runs are reconciled, 200 then, 503 once stopping")
    func readiness() async throws {
        let daemon = try await TestDaemon()
        // The router before the services run: nothing listens, nothing is reconciled.
        let app = Application(router: buildRouter(daemon.context))
        try await app.test(.router) { client in
            try await client.execute(uri: "/readiness", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("starting"), "\(String(buffer: response.body))")
            }
        }
        // The daemon served as `modeld serve` serves it: ready once `serve` runs its body.
        try await daemon.serve { client in
            try await client.execute(uri: "/readiness", method: .get) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
            }
        }
        #expect(daemon.context.readiness.notReadyReason == "the daemon is stopping")

        // Each condition on its own.
        let readiness = DaemonReadiness()
        let fired = ReadyFlag()
        readiness.expect(listeners: 2) { fired.set() }
        readiness.listening()
        #expect(readiness.notReadyReason == "1 of 2 listeners accept connections")
        readiness.listening()
        #expect(readiness.notReadyReason?.contains("reconciled") == true && !fired.isSet)
        readiness.reconciled()
        #expect(readiness.notReadyReason == nil && fired.isSet)
    }

    final class ReadyFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }
}
