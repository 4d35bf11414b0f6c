import Foundation

/// One GPU as the host reports it.
package struct GPU: Sendable, Hashable, Codable {
    /// The index `CUDA_VISIBLE_DEVICES` names it by.
    package var index: Int
    package var name: String
    package var memoryTotalMiB: Int
    package var memoryFreeMiB: Int
    /// Percent of the last sample period the GPU was busy; nil where the driver does not say.
    package var utilizationPercent: Int?

    package init(index: Int, name: String, memoryTotalMiB: Int, memoryFreeMiB: Int, utilizationPercent: Int?) {
        self.index = index
        self.name = name
        self.memoryTotalMiB = memoryTotalMiB
        self.memoryFreeMiB = memoryFreeMiB
        self.utilizationPercent = utilizationPercent
    }
}

/// A GPU inventory that could not be read.
package struct GPUInventoryError: Error, CustomStringConvertible, Sendable {
    package var description: String
}

/// The host's NVIDIA GPUs, from `nvidia-smi` (docs/design/gpus.md, Inventory). A host without `nvidia-smi` on its
/// PATH has no GPUs.
package struct GPUInventory: Sendable {
    /// What `nvidia-smi` is asked: one CSV line per GPU, memory in MiB, utilisation in percent.
    package static let arguments = [
        "--query-gpu=index,name,memory.total,memory.free,utilization.gpu", "--format=csv,noheader,nounits",
    ]
    /// How long `nvidia-smi` may take (a wedged driver makes it hang).
    static let timeout: Duration = .seconds(10)

    /// The PATH `nvidia-smi` is looked up on.
    package var searchPath: String

    package init(searchPath: String) {
        self.searchPath = searchPath
    }

    /// The GPUs now; none when `nvidia-smi` is not installed.
    /// - Throws: ``GPUInventoryError`` when it fails, hangs or prints what is not its CSV.
    package func read() async throws -> [GPU] {
        guard let program = executable() else { return [] }
        let output = try await Task.detached { try Self.run(program) }.value
        return try Self.parse(output)
    }

    /// The first executable `nvidia-smi` on ``searchPath``.
    func executable() -> String? {
        searchPath.split(separator: ":").map { "\($0)/nvidia-smi" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private static func run(_ program: String) throws -> String {
        let process = Process()
        process.executableURL = URL(filePath: program)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw GPUInventoryError(description: "cannot run \(program): \(error)")
        }
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(Int(timeout.components.seconds)), execute: watchdog)
        // A throwing read: `readDataToEndOfFile` would stop the daemon on a read error.
        let data = (try? pipe.fileHandleForReading.readToEnd()) ?? Data()
        try? pipe.fileHandleForReading.close()
        process.waitUntilExit()
        watchdog.cancel()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw GPUInventoryError(
                description: "\(program) failed (status \(process.terminationStatus)): \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Parses `nvidia-smi`'s lines: `0, NVIDIA A100-SXM4-80GB, 81920, 81037, 3` (utilisation may be `[N/A]`).
    package static func parse(_ text: String) throws -> [GPU] {
        try text.split(whereSeparator: \.isNewline).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 5, let index = Int(fields[0]), let total = Int(fields[2]), let free = Int(fields[3]), index >= 0,
                total >= 0, free >= 0
            else {
                throw GPUInventoryError(
                    description: "nvidia-smi printed \"\(line.prefix(200))\", not index, name, memory total, memory free, utilisation")
            }
            return GPU(index: index, name: fields[1], memoryTotalMiB: total, memoryFreeMiB: free, utilizationPercent: Int(fields[4]))
        }
    }
}
