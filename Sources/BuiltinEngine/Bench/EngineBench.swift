import EngineCompute
import Foundation
import ModelText

#if canImport(Glibc)
    import Glibc
#endif

/// Prefill and decode throughput of a model, as `modeld engine bench` reports it.
package struct BenchResult: Sendable, CustomStringConvertible {
    package var promptTokens: Int
    package var generatedTokens: Int
    package var batch: Int
    package var threads: Int
    /// Seconds to prefill one prompt of `promptTokens`.
    package var prefillSeconds: Double
    /// Seconds for `generatedTokens` batched decode steps of `batch` sequences.
    package var decodeSeconds: Double
    /// Process CPU seconds (all threads) spent in the prefill and in the decode steps: on a busy
    /// machine, wall time overstates the engine's own cost.
    package var prefillCPUSeconds: Double
    package var decodeCPUSeconds: Double

    package var prefillTokensPerSecond: Double { Double(promptTokens) / prefillSeconds }
    /// Aggregate over the batch: `batch × generatedTokens / decodeSeconds`.
    package var decodeTokensPerSecond: Double { Double(batch * generatedTokens) / decodeSeconds }

    package var description: String {
        String(
            format:
                "prefill %d tokens: %.1f tok/s (%.3f s, %.3f CPU-s); decode %d tokens x batch %d: %.1f tok/s aggregate (%.1f ms/step, %.3f CPU-s); %d threads",
            promptTokens, prefillTokensPerSecond, prefillSeconds, prefillCPUSeconds, generatedTokens, batch,
            decodeTokensPerSecond, 1000 * decodeSeconds / Double(max(1, generatedTokens)), decodeCPUSeconds, threads
        )
    }
}

/// The engine benchmark: times one prompt's prefill, then `generatedTokens` decode steps of
/// `batch` sequences at once (each prefilled first), on random token ids.
package enum EngineBench {
    /// Loads `directory` and benchmarks it.
    package static func run(directory: URL, promptTokens: Int, generatedTokens: Int, batch: Int = 1) throws -> BenchResult {
        try run(model: TransformerModel(directory: directory), promptTokens: promptTokens, generatedTokens: generatedTokens, batch: batch)
    }

    /// Benchmarks random bf16 weights of `config`'s shape (default: Qwen2.5-0.5B's) built in memory.
    package static func runRandom(config: ModelConfig = .qwen25_0_5B, promptTokens: Int, generatedTokens: Int, batch: Int = 1) throws -> BenchResult {
        let model = try TransformerModel(config: config, generationConfig: GenerationConfig(), weights: RandomWeights(config: config))
        return try run(model: model, promptTokens: promptTokens, generatedTokens: generatedTokens, batch: batch)
    }

    package static func run(model: TransformerModel, promptTokens: Int, generatedTokens: Int, batch: Int = 1) throws -> BenchResult {
        precondition(promptTokens > 0 && generatedTokens > 0 && batch > 0, "bench sizes must be positive")
        var random = SeededGenerator(seed: 7)
        let vocab = model.config.vocabSize
        func prompt() -> [Int32] { (0..<promptTokens).map { _ in Int32(random.next() % UInt64(vocab)) } }

        // Touch every weight once so page faults and cold caches are not timed.
        _ = try model.forward([ForwardSegment(cache: model.makeCache(capacity: 8), tokens: [1])])

        let caches = (0..<batch).map { _ in model.makeCache(capacity: promptTokens + generatedTokens + 1) }
        let firstPrompt = prompt()
        let cpuStart = cpuSeconds()
        let start = DispatchTime.now()
        var logits = try model.forward([ForwardSegment(cache: caches[0], tokens: firstPrompt)])
        let prefillSeconds = seconds(since: start)
        let prefillCPUSeconds = cpuSeconds() - cpuStart
        var next = [Sampler.argmax(logits[0][0])]
        for cache in caches.dropFirst() {
            logits = try model.forward([ForwardSegment(cache: cache, tokens: prompt())])
            next.append(Sampler.argmax(logits[0][0]))
        }

        let decodeCPUStart = cpuSeconds()
        let decodeStart = DispatchTime.now()
        for _ in 0..<generatedTokens {
            let segments = zip(caches, next).map { ForwardSegment(cache: $0, tokens: [$1]) }
            logits = try model.forward(segments)
            next = logits.map { Sampler.argmax($0[0]) }
        }
        let decodeSeconds = seconds(since: decodeStart)
        return BenchResult(
            promptTokens: promptTokens, generatedTokens: generatedTokens, batch: batch, threads: model.pool.threadCount,
            prefillSeconds: prefillSeconds, decodeSeconds: decodeSeconds,
            prefillCPUSeconds: prefillCPUSeconds, decodeCPUSeconds: cpuSeconds() - decodeCPUStart
        )
    }

    /// User and system CPU time of the whole process.
    private static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    private static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
