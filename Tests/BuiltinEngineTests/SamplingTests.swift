import BuiltinEngine
import EngineCompute
import Foundation
import ModelText
import Testing

@Suite("sampling")
struct SamplingTests {
    private func logits(_ probabilities: [Float]) -> [Float] { probabilities.map { logf($0) } }

    private func draws(_ parameters: SamplingParameters, logits: [Float], count: Int) -> [Int32] {
        var sampler = Sampler(parameters: parameters, promptTokens: [])
        return (0..<count).map { _ in sampler.sample(logits).token }
    }

    @Test func seededSamplingIsReproducible() {
        let flat = (0..<50).map { Float($0 % 7) * 0.1 }
        let a = draws(SamplingParameters(temperature: 1, seed: 1234), logits: flat, count: 200)
        let b = draws(SamplingParameters(temperature: 1, seed: 1234), logits: flat, count: 200)
        let c = draws(SamplingParameters(temperature: 1, seed: 1235), logits: flat, count: 200)
        #expect(a == b)
        #expect(a != c)
        #expect(Set(a).count > 20, "a near-uniform distribution should spread draws")
    }

    @Test func topKOfOneIsGreedy() {
        var generator = SeededGenerator(seed: 9)
        for trial in 0..<20 {
            let scores = (0..<100).map { _ in Float(generator.nextUnit() * 10 - 5) }
            let sampled = draws(SamplingParameters(temperature: 1.3, topK: 1, seed: UInt64(trial)), logits: scores, count: 5)
            #expect(sampled == Array(repeating: Sampler.argmax(scores), count: 5))
            #expect(draws(.greedy(maxTokens: 1), logits: scores, count: 1) == [Sampler.argmax(scores)])
        }
    }

    @Test func temperatureReshapesTheDistribution() {
        let scores = logits([0.5, 0.3, 0.2])
        // At temperature 1 the draw frequencies follow p; at 0.5 they follow p² renormalised.
        for (temperature, target) in [(Float(1), [0.5, 0.3, 0.2]), (0.5, [0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38])] {
            let sample = draws(SamplingParameters(temperature: temperature, seed: 5), logits: scores, count: 20000)
            for id in 0..<3 {
                let frequency = Double(sample.filter { $0 == Int32(id) }.count) / 20000
                #expect(abs(frequency - target[id]) < 0.015, "temperature \(temperature) token \(id): \(frequency)")
            }
        }
    }

    @Test func topPKeepsTheSmallestNucleus() {
        let scores = logits([0.1, 0.5, 0.15, 0.25])
        // Ascending 0.1, 0.15, 0.25, 0.5 has cumulative sums 0.1, 0.25, 0.5, 1: with top_p 0.7 the
        // first two (≤ 0.3) go; 0.5 and 0.25 remain, renormalised to 2/3 and 1/3.
        let kept = Sampler.candidates(scores, temperature: 1, topK: 0, topP: 0.7, minP: 0)
        #expect(kept.map(\.id) == [1, 3])
        #expect(abs(kept[0].logprob - 2.0 / 3) < 1e-5 && abs(kept[1].logprob - 1.0 / 3) < 1e-5)
        // A tiny top_p still keeps the most likely token.
        #expect(Sampler.candidates(scores, temperature: 1, topK: 0, topP: 0.01, minP: 0).map(\.id) == [1])
        #expect(Sampler.candidates(scores, temperature: 1, topK: 0, topP: 1, minP: 0).count == 4)
        let sampled = Set(draws(SamplingParameters(temperature: 1, topP: 0.7, seed: 3), logits: scores, count: 500))
        #expect(sampled == [1, 3])
    }

    @Test func minPDropsTokensBelowAFractionOfTheTop() {
        let scores = logits([0.1, 0.5, 0.15, 0.25])
        #expect(Sampler.candidates(scores, temperature: 1, topK: 0, topP: 1, minP: 0.25).map(\.id) == [1, 3, 2])
        #expect(Sampler.candidates(scores, temperature: 1, topK: 0, topP: 1, minP: 0.4).map(\.id) == [1, 3])
        #expect(Sampler.candidates(scores, temperature: 1, topK: 2, topP: 1, minP: 0).map(\.id) == [1, 3])
        let sampled = Set(draws(SamplingParameters(temperature: 1, minP: 0.4, seed: 3), logits: scores, count: 500))
        #expect(sampled == [1, 3])
    }

    /// transformers' repetition penalty and OpenAI's presence/frequency penalties, worked by hand.
    @Test func penaltiesFollowTheFormulas() {
        var scores: [Float] = [2.0, -1.0, 0.5, -0.5, 3.0]
        Sampler.applyPenalties(
            &scores, seen: [0, 1, 3], outputCounts: [0: 2, 3: 1], repetition: 1.5, presence: 0.5, frequency: 0.25
        )
        // 0: 2/1.5 - (0.25·2 + 0.5); 1: -1·1.5; 2: untouched; 3: -0.5·1.5 - (0.25 + 0.5); 4: untouched.
        let expected: [Float] = [1.3333333 - 1.0, -1.5, 0.5, -0.75 - 0.75, 3.0]
        #expect(maxAbsDifference(scores, expected) < 1e-6)
    }

    @Test func repetitionPenaltyChangesTheGreedyChoice() {
        let scores: [Float] = [1.0, 1.2, 0.3]
        var plain = Sampler(parameters: .greedy(maxTokens: 1), promptTokens: [1])
        #expect(plain.sample(scores).token == 1)
        var penalised = Sampler(parameters: SamplingParameters(temperature: 0, repetitionPenalty: 1.3), promptTokens: [1])
        #expect(penalised.sample(scores).token == 0)
        var frequency = Sampler(parameters: SamplingParameters(temperature: 0, frequencyPenalty: 0.15), promptTokens: [])
        frequency.accept(1)
        #expect(frequency.sample(scores).token == 1)
        frequency.accept(1)
        #expect(frequency.sample(scores).token == 0)
    }

    @Test func logprobsDescribeTheRawDistribution() throws {
        let probabilities: [Float] = [0.1, 0.5, 0.15, 0.25]
        var sampler = Sampler(
            parameters: SamplingParameters(temperature: 0, repetitionPenalty: 2, logprobs: true, topLogprobs: 3),
            promptTokens: [1]
        )
        let result = sampler.sample(logits(probabilities).map { $0 + 3 })
        #expect(result.token == 3)
        let logprob = try #require(result.logprob)
        #expect(abs(logprob - logf(0.25)) < 1e-5)
        #expect(result.top.map(\.id) == [1, 3, 2])
        for entry in result.top { #expect(abs(entry.logprob - logf(probabilities[Int(entry.id)])) < 1e-5) }
    }

    @Test func defaultsComeFromGenerationConfig() throws {
        let directory = try Fixtures.directory("qwen2-tiny")
        let parameters = SamplingParameters(defaults: try GenerationConfig(directory: directory), maxTokens: 10)
        #expect(parameters.temperature == 0.7 && parameters.topK == 20 && parameters.topP == 0.8)
        #expect(parameters.repetitionPenalty == 1.05)
    }
}

@Suite("stopping")
struct StoppingTests {
    @Test func stopsAtEndOfSequenceUnlessIgnoredOrTooEarly() throws {
        let expected = try Fixtures.expected("llama3-tiny")
        let generator = Generator(model: try Fixtures.model("llama3-tiny"))
        // Make the third greedy token a stop token: generation ends there with reason stop.
        let stop = expected.greedy_ids[2]
        let firstIndex = try #require(expected.greedy_ids.firstIndex(of: stop))
        let stopped = try generator.generate(
            prompt: expected.prompt_ids, parameters: SamplingParameters(temperature: 0, maxTokens: 40, stopTokenIds: [stop])
        )
        #expect(stopped.map(\.id) == Array(expected.greedy_ids.prefix(firstIndex + 1)))
        #expect(stopped.last?.finishReason == .stop)

        // With min_tokens past it, the stop token is masked and never generated early.
        let held = try generator.generate(
            prompt: expected.prompt_ids,
            parameters: SamplingParameters(temperature: 0, maxTokens: 6, minTokens: 6, stopTokenIds: [stop])
        )
        #expect(held.count == 6)
        #expect(!held.map(\.id).contains(stop))
        #expect(held.last?.finishReason == .length)
    }

    @Test func finishedGenerationsAreSkipped() throws {
        let expected = try Fixtures.expected("qwen2-tiny")
        let generator = Generator(model: try Fixtures.model("qwen2-tiny"))
        let parameters = SamplingParameters(temperature: 0, maxTokens: 10, ignoreEOS: true)
        let a = try generator.makeGeneration(prompt: expected.prompt_ids, parameters: parameters)
        let b = try generator.makeGeneration(prompt: expected.chat_prompt_ids, parameters: parameters)
        _ = try generator.step([a, b])
        a.finish(.stop)
        let tokens = try generator.step([a, b])
        #expect(tokens[0] == nil && tokens[1] != nil)
        #expect(a.outputTokens.count == 1 && b.outputTokens.count == 2)
        #expect(a.finishReason == .stop)
        // Qwen2.5-0.5B's KV cache: 24 layers × 2 KV heads × 64 × 2 (K and V) × 2 bytes = 12 KiB per token.
        #expect(ModelConfig.qwen25_0_5B.kvCacheBytesPerToken == 12 * 1024)
    }

    @Test func maxTokensEndsWithLength() throws {
        let expected = try Fixtures.expected("qwen2-tiny")
        let generator = Generator(model: try Fixtures.model("qwen2-tiny"))
        let tokens = try generator.generate(
            prompt: expected.prompt_ids, parameters: SamplingParameters(temperature: 0.8, topP: 0.9, seed: 1, maxTokens: 7, ignoreEOS: true)
        )
        #expect(tokens.count == 7)
        #expect(tokens.last?.finishReason == .length)
    }

    @Test func seededGenerationIsReproducible() throws {
        let expected = try Fixtures.expected("qwen3-tiny")
        let generator = Generator(model: try Fixtures.model("qwen3-tiny"))
        let parameters = SamplingParameters(temperature: 1.0, topK: 50, topP: 0.95, seed: 77, maxTokens: 20, ignoreEOS: true, logprobs: true)
        let a = try generator.generate(prompt: expected.chat_prompt_ids, parameters: parameters)
        let b = try generator.generate(prompt: expected.chat_prompt_ids, parameters: parameters)
        #expect(a.map(\.id) == b.map(\.id))
        #expect(a.allSatisfy { ($0.logprob ?? 1) <= 0 })
    }
}
