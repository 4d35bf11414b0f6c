#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A token id with its log-probability.
package struct TokenLogprob: Sendable, Equatable {
    package var id: Int32
    package var logprob: Float

    package init(id: Int32, logprob: Float) {
        self.id = id
        self.logprob = logprob
    }
}

/// Picks one request's tokens from logits: penalties, temperature, top-k, top-p, min-p, then a
/// draw from the request's own seeded generator, in transformers' order.
package struct Sampler: Sendable {
    package let parameters: SamplingParameters
    private var generator: SeededGenerator
    /// Tokens of the prompt and the output: the repetition penalty's set.
    private var seen: Set<Int32>
    /// Output tokens and how often each occurred: the presence and frequency penalties' counts.
    private var outputCounts: [Int32: Int] = [:]

    package init(parameters: SamplingParameters, promptTokens: [Int32]) {
        self.parameters = parameters
        generator = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
        seen = Set(promptTokens)
    }

    /// Records a generated token for the penalties.
    package mutating func accept(_ token: Int32) {
        seen.insert(token)
        outputCounts[token, default: 0] += 1
    }

    /// Chooses the next token.
    /// - Parameters:
    ///   - logits: the model's raw logits for the next position.
    ///   - banned: ids that must not be chosen (stop tokens before `minTokens`).
    /// - Returns: the token and, when asked for, its log-probability and the top alternatives,
    ///   both under the model's raw distribution (before penalties and filtering, as vLLM reports).
    package mutating func sample(_ logits: [Float], banned: [Int32] = []) -> (token: Int32, logprob: Float?, top: [TokenLogprob]) {
        var scores = logits
        Self.applyPenalties(
            &scores, seen: seen, outputCounts: outputCounts, repetition: parameters.repetitionPenalty,
            presence: parameters.presencePenalty, frequency: parameters.frequencyPenalty
        )
        for id in banned where Int(id) < scores.count && id >= 0 { scores[Int(id)] = -.infinity }

        let token: Int32
        if parameters.temperature <= 0 || parameters.topK == 1 {
            token = Self.argmax(scores)
        } else {
            let candidates = Self.candidates(
                scores, temperature: parameters.temperature, topK: parameters.topK, topP: parameters.topP, minP: parameters.minP
            )
            token = Self.draw(candidates, unit: generator.nextUnit())
        }
        guard parameters.logprobs || parameters.topLogprobs > 0 else { return (token, nil, []) }
        let logSum = Self.logSumExp(logits)
        let top = Self.topIndices(logits, count: parameters.topLogprobs).map {
            TokenLogprob(id: Int32($0), logprob: logits[$0] - logSum)
        }
        return (token, logits[Int(token)] - logSum, top)
    }

    /// transformers' `RepetitionPenaltyLogitsProcessor` (positive logits divided, others multiplied,
    /// once per distinct token of prompt and output), then OpenAI's presence and frequency
    /// penalties over output tokens.
    package static func applyPenalties(
        _ scores: inout [Float], seen: Set<Int32>, outputCounts: [Int32: Int],
        repetition: Float, presence: Float, frequency: Float
    ) {
        if repetition != 1 {
            for id in seen where id >= 0 && Int(id) < scores.count {
                let value = scores[Int(id)]
                scores[Int(id)] = value > 0 ? value / repetition : value * repetition
            }
        }
        if presence != 0 || frequency != 0 {
            for (id, count) in outputCounts where id >= 0 && Int(id) < scores.count && count > 0 {
                scores[Int(id)] -= frequency * Float(count) + presence
            }
        }
    }

    /// The tokens that survive temperature, top-k, top-p and min-p, with their probabilities
    /// renormalised to sum to 1, in descending order of probability.
    package static func candidates(_ scores: [Float], temperature: Float, topK: Int, topP: Float, minP: Float) -> [TokenLogprob] {
        let inverse = 1 / temperature
        var kept = Array(scores.indices.filter { scores[$0] > -.infinity })
        if topK > 0 && topK < kept.count {
            // Ties with the k-th score are kept, as transformers' `scores < topk[-1]` does.
            let threshold = scores[topIndices(scores, count: topK).last!]
            kept.removeAll { scores[$0] < threshold }
        }
        guard !kept.isEmpty else { return [] }
        let maximum = kept.map { scores[$0] * inverse }.max()!
        var probabilities = kept.map { expf(scores[$0] * inverse - maximum) }
        var total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }

        if topP < 1 {
            // Tokens below (1 - top_p) / n are removed whatever happens (their whole mass is at most
            // 1 - top_p and they come first in ascending order): drop them before sorting.
            let floor = (1 - topP) / Float(kept.count)
            var dropped: Float = 0
            var pairs: [(index: Int, p: Float)] = []
            for (i, p) in zip(kept, probabilities) {
                if p < floor { dropped += p } else { pairs.append((i, p)) }
            }
            pairs.sort { $0.p != $1.p ? $0.p < $1.p : $0.index > $1.index }
            var cumulative = dropped
            var first = 0
            for (position, pair) in pairs.enumerated() {
                cumulative += pair.p
                if cumulative <= 1 - topP && position < pairs.count - 1 { first = position + 1 }
            }
            kept = pairs[first...].map(\.index)
            probabilities = pairs[first...].map(\.p)
        }
        if minP > 0, let top = probabilities.max() {
            let threshold = minP * top
            let survivors = zip(kept, probabilities).filter { $0.1 >= threshold }
            kept = survivors.map(\.0)
            probabilities = survivors.map(\.1)
        }
        total = probabilities.reduce(0, +)
        return zip(kept, probabilities)
            .map { TokenLogprob(id: Int32($0.0), logprob: $0.1 / total) }
            .sorted { $0.logprob != $1.logprob ? $0.logprob > $1.logprob : $0.id < $1.id }
    }

    /// Picks from `candidates` (probabilities in `logprob`, summing to 1) with `unit` in [0, 1).
    package static func draw(_ candidates: [TokenLogprob], unit: Double) -> Int32 {
        var cumulative = 0.0
        for candidate in candidates {
            cumulative += Double(candidate.logprob)
            if unit < cumulative { return candidate.id }
        }
        return candidates.last?.id ?? 0
    }

    /// The index of the largest score, the lowest index on ties (as `torch.argmax`).
    package static func argmax(_ scores: [Float]) -> Int32 {
        var best = 0
        for i in scores.indices where scores[i] > scores[best] { best = i }
        return Int32(best)
    }

    /// `log Σ exp(x)`, computed stably.
    package static func logSumExp(_ values: [Float]) -> Float {
        let maximum = values.max() ?? 0
        var sum: Double = 0
        for value in values { sum += Double(expf(value - maximum)) }
        return maximum + Float(log(sum))
    }

    /// Indices of the `count` largest values, largest first (lower index first on ties).
    package static func topIndices(_ values: [Float], count: Int) -> [Int] {
        guard count > 0 else { return [] }
        var best: [Int] = []
        best.reserveCapacity(count + 1)
        for i in values.indices {
            if best.count == count, let last = best.last, values[i] <= values[last] { continue }
            var position = best.count
            while position > 0 && values[best[position - 1]] < values[i] { position -= 1 }
            best.insert(i, at: position)
            if best.count > count { best.removeLast() }
        }
        return best
    }
}
