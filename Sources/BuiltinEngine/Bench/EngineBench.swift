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
    /// Loads `directory` (or a GGUF file) and benchmarks it.
    package static func run(directory: URL, promptTokens: Int, generatedTokens: Int, batch: Int = 1) throws -> BenchResult {
        try run(model: TransformerModel(path: directory), promptTokens: promptTokens, generatedTokens: generatedTokens, batch: batch)
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

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}

/// Structured output's cost per token: the same decode steps plain (argmax) and constrained by a JSON schema.
package struct MaskBenchResult: Sendable, CustomStringConvertible {
    package var tokens: Int
    package var plainSeconds: Double
    package var maskedSeconds: Double
    /// Seconds of the masked run spent computing masks and advancing the grammar (cache hits included).
    package var maskSeconds: Double
    /// Seconds to compute the masks of the same states with an empty cache (the trie walk every time).
    package var uncachedMaskSeconds: Double
    /// Whole JSON values generated in the masked run (each ends and a new one begins).
    package var outputs: Int
    package var vocabulary: Int

    package var description: String {
        let perToken = { (seconds: Double) in 1000 * seconds / Double(max(1, tokens)) }
        return String(
            format: "decode %d tokens, vocabulary %d: plain %.2f ms/token (%.1f tok/s), masked %.2f ms/token (%.1f tok/s); "
                + "mask %.3f ms/token (cached as served), %.3f ms/token uncached; %d JSON outputs",
            tokens, vocabulary, perToken(plainSeconds), Double(tokens) / plainSeconds, perToken(maskedSeconds),
            Double(tokens) / maskedSeconds, perToken(maskSeconds), perToken(uncachedMaskSeconds), outputs)
    }
}

extension EngineBench {
    /// Loads `directory` (random weights of Qwen2.5-0.5B's shape when nil) and the tokenizer in `tokenizerDirectory`,
    /// and measures decoding under `schema` (JSON Schema text).
    package static func runMasked(
        directory: URL?, tokenizerDirectory: URL, schema: Data, promptTokens: Int, generatedTokens: Int
    ) throws -> MaskBenchResult {
        let model =
            try directory.map { try TransformerModel(directory: $0) }
            ?? TransformerModel(config: .qwen25_0_5B, generationConfig: GenerationConfig(), weights: RandomWeights(config: .qwen25_0_5B))
        let grammar = try JSONGrammar(schema: try JinjaValue(json: Array(schema)))
        return try runMasked(
            model: model, tokenizer: try Tokenizer(directory: tokenizerDirectory), grammar: grammar, promptTokens: promptTokens,
            generatedTokens: generatedTokens)
    }

    /// Decodes `generatedTokens` greedily after a random prompt, plain, then under `grammar` (a new value begins
    /// when one is complete); both runs take the same model steps, so their difference is the mask's cost.
    package static func runMasked(
        model: TransformerModel, tokenizer: Tokenizer, grammar: JSONGrammar, promptTokens: Int, generatedTokens: Int
    ) throws -> MaskBenchResult {
        var random = SeededGenerator(seed: 7)
        let prompt = (0..<promptTokens).map { _ in Int32(random.next() % UInt64(model.config.vocabSize)) }
        let vocabulary = TokenTrie(tokenizer: tokenizer)
        _ = try model.forward([ForwardSegment(cache: model.makeCache(capacity: 8), tokens: [1])])

        func decode(_ choose: ([Float]) -> Int32) throws -> Double {
            let cache = model.makeCache(capacity: promptTokens + generatedTokens + 1)
            var logits = try model.forward([ForwardSegment(cache: cache, tokens: prompt)])[0][0]
            let start = DispatchTime.now()
            for _ in 0..<generatedTokens {
                let next = choose(logits)
                logits = try model.forward([ForwardSegment(cache: cache, tokens: [next])])[0][0]
            }
            return seconds(since: start)
        }
        let plainSeconds = try decode { Sampler.argmax($0) }

        var constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary)
        var sampler = Sampler(parameters: .greedy(maxTokens: generatedTokens), promptTokens: [])
        var maskSeconds = 0.0
        var outputs = 0
        var current: [Int32] = []
        var visited: [[Int32]] = []
        let maskedSeconds = try decode { logits in
            let start = DispatchTime.now()
            if constraint.isComplete {
                constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary)
                outputs += 1
                current = []
            }
            // Each value may take as many tokens as the run (at least its shortest form), as `max_tokens` would allow.
            let budget = max(grammar.shortestOutput, generatedTokens) - current.count
            let mask = constraint.mask(budget: budget, size: logits.count)
            visited.append(current)
            let token = sampler.sample(logits, allowed: mask).token
            constraint.accept(token)
            current.append(token)
            maskSeconds += seconds(since: start)
            return token
        }
        // The same states' masks, each computed from an empty cache.
        var uncachedMaskSeconds = 0.0
        for tokens in visited {
            let fresh = JSONConstraint(grammar: grammar, vocabulary: vocabulary)
            for token in tokens { fresh.accept(token) }
            let start = DispatchTime.now()
            _ = fresh.mask(budget: max(grammar.shortestOutput, generatedTokens) - tokens.count, size: model.config.vocabSize)
            uncachedMaskSeconds += seconds(since: start)
        }
        return MaskBenchResult(
            tokens: generatedTokens, plainSeconds: plainSeconds, maskedSeconds: maskedSeconds, maskSeconds: maskSeconds,
            uncachedMaskSeconds: uncachedMaskSeconds, outputs: outputs + (current.isEmpty ? 0 : 1), vocabulary: tokenizer.vocabularySize)
    }
}
