import Foundation

/// Which build of the compute-bound kernels a matrix multiply uses.
///
/// The engine is compiled for AVX2 and FMA (`-target-cpu haswell`); the packed prefill kernels
/// also exist compiled for AVX-512 (the `EngineAVX512` module), used where the CPU has it.
package enum InstructionSet: Sendable {
    case avx2
    case avx512

    /// Whether the CPU and kernel support AVX-512 (F, CD, BW, DQ, VL: the `skylake-avx512` level),
    /// whatever `MODELD_ENGINE_AVX512` says.
    package static let cpuHasAVX512 = cpuFlags().isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"])

    /// AVX-512 if ``cpuHasAVX512``, unless `MODELD_ENGINE_AVX512=0`; AVX2 otherwise.
    package static let best: InstructionSet = {
        if ProcessInfo.processInfo.environment["MODELD_ENGINE_AVX512"] == "0" { return .avx2 }
        return cpuHasAVX512 ? .avx512 : .avx2
    }()

    /// The feature flags Linux reports for the first CPU: only those the kernel also enabled
    /// (AVX-512 registers need its support to be saved across context switches).
    private static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }
}
