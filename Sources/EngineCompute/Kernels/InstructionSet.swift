import Foundation

/// Which build of the compute-bound kernels a matrix multiply uses.
///
/// The engine is compiled for AVX2 and FMA (`-target-cpu haswell`); the packed prefill kernels
/// also exist compiled for AVX-512 (the `EngineAVX512` module), used where the CPU has it, and
/// prefill with bf16 weights can run on AMX-BF16 tiles (``AMXMatMul``).
package enum InstructionSet: Sendable {
    case avx2
    case avx512
    /// AVX-512, and AMX-BF16 tiles for products of many tokens with bf16 weights, each activation
    /// split into two bf16 parts (about 16 significant bits: ``AMXMatMul/Precision/split``).
    case amx
    /// The same with activations rounded to bf16 (``AMXMatMul/Precision/rounded``): half the
    /// tile work, 8 significant bits.
    case amxBF16
    /// AVX-512, and `vdpbf16ps` (AVX512_BF16) for products of many tokens with bf16 weights, each activation
    /// split into two bf16 parts as with ``amx``: for CPUs with AVX512_BF16 but no AMX (AMD Zen 4 and 5).
    case avx512BF16
    /// The same with activations rounded to bf16, as with ``amxBF16``.
    case avx512BF16Rounded

    /// Whether the CPU and kernel support AVX-512 (F, CD, BW, DQ, VL: the `skylake-avx512` level),
    /// whatever `MODELD_ENGINE_AVX512` says.
    package static let cpuHasAVX512 = flags.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"])

    /// Whether the CPU has AVX-512 and its VNNI (`vpdpbusd`), for the integer dot products of block-quantized
    /// weights (``QuantizedMatMul``).
    package static let cpuHasVNNI = cpuHasAVX512 && flags.contains("avx512_vnni")

    /// Whether products of block-quantized weights use the AVX-512 VNNI kernels: with every AVX-512 set where
    /// the CPU has VNNI; with ``avx2``, the AVX2 kernels.
    package var usesVNNI: Bool { self != .avx2 && Self.cpuHasVNNI }

    /// Whether the CPU has AVX-512 and AVX512_BF16 (`vdpbf16ps`).
    package static let cpuHasAVX512BF16 = cpuHasAVX512 && flags.contains("avx512_bf16")

    /// Whether the CPU has AVX-512 and AMX-BF16 and Linux lets this process use the tiles,
    /// whatever `MODELD_ENGINE_AMX` says.
    package static var cpuHasAMX: Bool { cpuHasAVX512 && AMXMatMul.isUsable }

    /// The fastest exact build: AVX-512 if ``cpuHasAVX512``, unless `MODELD_ENGINE_AVX512=0`;
    /// AVX2 otherwise. Products stay f32 × widened weights, so this is what the kernels use unless
    /// told otherwise.
    package static let best: InstructionSet = {
        if ProcessInfo.processInfo.environment["MODELD_ENGINE_AVX512"] == "0" { return .avx2 }
        return cpuHasAVX512 ? .avx512 : .avx2
    }()

    /// What models use: ``amx`` if ``cpuHasAMX`` and ``best`` is AVX-512, ``amxBF16`` instead with
    /// `MODELD_ENGINE_AMX=bf16`; without AMX, ``avx512BF16Rounded`` if ``cpuHasAVX512BF16`` (``avx512BF16`` with
    /// `MODELD_ENGINE_AMX=split`); ``best`` with `MODELD_ENGINE_AMX=0` or without either. Only the prefill of bf16
    /// weights is affected, so other models compute exactly as with ``best``.
    ///
    /// `vdpbf16ps` takes activations rounded to bf16 by default, as llama.cpp and PyTorch's bf16 models do: two
    /// parts do as many instructions per product as f32 FMAs and leave prefill at about half llama.cpp's speed
    /// (docs/benchmarks.md). AMX tiles multiply fast enough to keep the two parts' precision.
    package static let preferred: InstructionSet = {
        let setting = ProcessInfo.processInfo.environment["MODELD_ENGINE_AMX"]
        guard best == .avx512, setting != "0" else { return best }
        if cpuHasAMX { return setting == "bf16" ? .amxBF16 : .amx }
        if cpuHasAVX512BF16 { return setting == "split" ? .avx512BF16 : .avx512BF16Rounded }
        return best
    }()

    /// The feature flags Linux reports for the first CPU: only those the kernel also enabled
    /// (AVX-512 registers need its support to be saved across context switches).
    private static let flags = cpuFlags()

    private static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }
}
