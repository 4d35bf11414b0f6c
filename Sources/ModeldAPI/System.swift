/// `GET /api/v1/system` (`modelctl system`): the host's CPU, memory, disk and GPUs.
package struct SystemInfo: Codable, Sendable {
    package var cpu: CPUInfo
    package var memory: MemoryInfo
    /// The file system of the data directory.
    package var disk: DiskInfo
    /// The NVIDIA GPUs `nvidia-smi` reports; empty on a host without it.
    package var gpus: [GPUInfo]
    /// Why the GPUs could not be read (`nvidia-smi` failed), when they could not.
    package var gpuError: String?

    package init(cpu: CPUInfo, memory: MemoryInfo, disk: DiskInfo, gpus: [GPUInfo], gpuError: String? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.gpus = gpus
        self.gpuError = gpuError
    }

    enum CodingKeys: String, CodingKey {
        case cpu, memory, disk, gpus
        case gpuError = "gpu_error"
    }
}

package struct CPUInfo: Codable, Sendable {
    /// `model name` of /proc/cpuinfo.
    package var model: String
    /// The CPUs this process may run on.
    package var logicalCPUs: Int

    package init(model: String, logicalCPUs: Int) {
        self.model = model
        self.logicalCPUs = logicalCPUs
    }

    enum CodingKeys: String, CodingKey {
        case model
        case logicalCPUs = "logical_cpus"
    }
}

package struct MemoryInfo: Codable, Sendable {
    package var totalBytes: Int64
    /// What can be allocated without swapping (`MemAvailable`).
    package var availableBytes: Int64

    package init(totalBytes: Int64, availableBytes: Int64) {
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
    }

    enum CodingKeys: String, CodingKey {
        case totalBytes = "total_bytes"
        case availableBytes = "available_bytes"
    }
}

package struct DiskInfo: Codable, Sendable {
    package var path: String
    package var totalBytes: Int64
    package var freeBytes: Int64

    package init(path: String, totalBytes: Int64, freeBytes: Int64) {
        self.path = path
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
    }

    enum CodingKeys: String, CodingKey {
        case path
        case totalBytes = "total_bytes"
        case freeBytes = "free_bytes"
    }
}

package struct GPUInfo: Codable, Sendable {
    /// The index `gpus` (`CUDA_VISIBLE_DEVICES`) names it by.
    package var index: Int
    package var name: String
    package var memoryTotalMiB: Int
    package var memoryFreeMiB: Int
    package var utilizationPercent: Int?
    /// The runs holding it (started on it, or placed on it).
    package var runs: [String]

    package init(index: Int, name: String, memoryTotalMiB: Int, memoryFreeMiB: Int, utilizationPercent: Int?, runs: [String]) {
        self.index = index
        self.name = name
        self.memoryTotalMiB = memoryTotalMiB
        self.memoryFreeMiB = memoryFreeMiB
        self.utilizationPercent = utilizationPercent
        self.runs = runs
    }

    enum CodingKeys: String, CodingKey {
        case index, name, runs
        case memoryTotalMiB = "memory_total_mib"
        case memoryFreeMiB = "memory_free_mib"
        case utilizationPercent = "utilization_percent"
    }
}
