import Downloads
import Foundation
import Hummingbird
import Launchers
import ModelStore
import ModeldAPI

/// `GET /api/v1/system`: the host's CPU, memory, the data directory's disk, and its GPUs with the runs holding each
/// (docs/design/gpus.md, Inventory).
struct SystemController {
    let daemon: DaemonContext

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.get("system", use: system)
    }

    @Sendable func system(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<SystemInfo> {
        var gpus: [GPU] = []
        var gpuError: String?
        do {
            gpus = try await daemon.supervisor.configuration.gpuInventory.read()
        } catch {
            gpuError = "\(error)"
        }
        var holders: [Int: [String]] = [:]
        for run in daemon.supervisor.snapshot where run.desiredState == .running {
            for index in run.gpus.map(GPUPlacement.indices) ?? [] { holders[index, default: []].append(run.name) }
        }
        let root = daemon.configuration.dataDirectory.root
        let space = fileSystemSpace(root)
        let memory = Self.meminfo()
        return Envelope(
            requestID: context.id,
            data: SystemInfo(
                cpu: CPUInfo(model: Self.cpuModel(), logicalCPUs: ProcessInfo.processInfo.activeProcessorCount),
                memory: MemoryInfo(totalBytes: memory["MemTotal"] ?? 0, availableBytes: memory["MemAvailable"] ?? 0),
                disk: DiskInfo(path: root.path(percentEncoded: false), totalBytes: space?.total ?? 0, freeBytes: space?.available ?? 0),
                gpus: gpus.map { gpu in
                    GPUInfo(
                        index: gpu.index, name: gpu.name, memoryTotalMiB: gpu.memoryTotalMiB, memoryFreeMiB: gpu.memoryFreeMiB,
                        utilizationPercent: gpu.utilizationPercent, runs: holders[gpu.index] ?? [])
                },
                gpuError: gpuError))
    }

    /// The first `model name` of /proc/cpuinfo (`unknown` where there is none, as on some ARM hosts).
    static func cpuModel() -> String {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }

    /// /proc/meminfo's lines in bytes (`MemTotal: 24576000 kB`).
    static func meminfo() -> [String: Int64] {
        let text = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        var values: [String: Int64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let value = Int64(parts[1]) else { continue }
            values[String(parts[0].dropLast())] = parts.count > 2 && parts[2] == "kB" ? value * 1024 : value
        }
        return values
    }
}
