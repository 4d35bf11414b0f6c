import Catalog
import Foundation
import Logging

@testable import Daemon

/// A data directory and daemon context in a temporary folder.
final class TestDaemon: Sendable {
    let root: URL
    let context: DaemonContext

    init(catalogPath: String? = nil) async throws {
        root = FileManager.default.temporaryDirectory.appending(path: "modeld-daemon-\(UUID().uuidString)", directoryHint: .isDirectory)
        context = try await DaemonStartup.prepare(
            flags: .init(listen: "127.0.0.1:0", dataDir: root.path, catalog: catalogPath),
            environment: ["HOME": root.path], logger: Logger(label: "test"))
    }

    deinit { try? FileManager.default.removeItem(at: root) }
}

/// Where SwiftPM put the built executables (`modeld`, `modelctl`), next to the test bundle.
let productsDirectory: URL = {
    var url = Bundle.main.bundleURL
    while !FileManager.default.fileExists(atPath: url.appending(path: "modeld").path), url.path != "/" {
        url.deleteLastPathComponent()
    }
    return url
}()

/// Runs an executable to completion, returning its exit status and output.
func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
