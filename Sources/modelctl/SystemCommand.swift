import ArgumentParser
import FoundationEssentials
import ModeldAPI
import ModeldClient

/// `modelctl system`: the host's CPU, memory, disk and GPUs, with the runs holding each GPU.
struct SystemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "system", abstract: "Show the host: CPU, memory, disk and GPUs.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let info: SystemInfo
        do {
            info = try await global.client().call("GET", "/api/v1/system")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(info) }
        print("CPU     \(info.cpu.model) (\(info.cpu.logicalCPUs) logical CPUs)")
        print("memory  \(Self.gib(info.memory.availableBytes)) available of \(Self.gib(info.memory.totalBytes))")
        print("disk    \(info.disk.path): \(Self.gib(info.disk.freeBytes)) free of \(Self.gib(info.disk.totalBytes))")
        if let error = info.gpuError { print("GPUs    unknown: \(error)") }
        if info.gpus.isEmpty, info.gpuError == nil { print("GPUs    none (no nvidia-smi)") }
        for gpu in info.gpus {
            let busy = gpu.utilizationPercent.map { ", \($0) % busy" } ?? ""
            let runs = gpu.runs.isEmpty ? "" : ", held by \(gpu.runs.joined(separator: ", "))"
            let free = Self.gib(Int64(gpu.memoryFreeMiB) << 20)
            print("GPU \(gpu.index)   \(gpu.name): \(free) free of \(Self.gib(Int64(gpu.memoryTotalMiB) << 20))\(busy)\(runs)")
        }
    }

    static func gib(_ bytes: Int64) -> String {
        let tenths = (bytes * 10 + (1 << 29)) >> 30
        return "\(tenths / 10).\(tenths % 10) GiB"
    }
}
