import BuiltinEngine
import Foundation
import ModelText
import Testing

@Suite("bench entry point")
struct BenchTests {
    /// Small shapes of each architecture: the random-weight source must provide every tensor the
    /// model asks for, and the bench must produce positive rates for a batch.
    @Test(arguments: Architecture.allCases)
    func randomModelBenchRuns(architecture: Architecture) throws {
        let config = ModelConfig(
            architecture: architecture, hiddenSize: 64, intermediateSize: 128, layerCount: 2, headCount: 4,
            kvHeadCount: 2, headDim: architecture == .qwen3 ? 32 : 16, vocabSize: 300, rmsNormEps: 1e-6,
            ropeTheta: 10000, tieWordEmbeddings: architecture == .qwen2, attentionBias: architecture == .qwen2,
            maxPositionEmbeddings: 512
        )
        let result = try EngineBench.runRandom(config: config, promptTokens: 9, generatedTokens: 4, batch: 3)
        #expect(result.prefillTokensPerSecond > 0 && result.decodeTokensPerSecond > 0)
        #expect(result.batch == 3 && result.generatedTokens == 4)
        #expect(result.description.contains("batch 3"))
    }

    @Test func qwen25ShapeIsTheRealOne() {
        let config = ModelConfig.qwen25_0_5B
        let q = config.headCount * config.headDim, kv = config.kvHeadCount * config.headDim
        let perLayer =
            2 * config.hiddenSize * q + 2 * config.hiddenSize * kv + 3 * config.hiddenSize * config.intermediateSize
            + q + 2 * kv + 2 * config.hiddenSize
        let parameters = config.vocabSize * config.hiddenSize + config.layerCount * perLayer + config.hiddenSize
        // Qwen2.5-0.5B has 494,032,768 parameters (tied embeddings counted once).
        #expect(parameters == 494_032_768)
    }
}
