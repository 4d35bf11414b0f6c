import EngineCompute
import Foundation
import ModelText
import Testing

/// Partial rotary and longrope (the phi4mini-tiny fixture: 12 of 16 head dimensions rotated, long factors unlike
/// the short ones, `original_max_position_embeddings` 16), beyond what ``ForwardTests`` and ``ArchitectureTests``
/// check of every fixture against transformers.
@Suite("partial rotary and longrope (Phi-4-mini)")
struct LongRopeTests {
    static let name = "phi4mini-tiny"

    @Test func configurationIsRead() throws {
        let config = try ModelConfig(directory: Fixtures.directory(Self.name))
        #expect(config.headDim == 16 && config.rotaryDimensions == 12)
        let longrope = try #require(Self.longrope(config))
        #expect(longrope.originalMaxPositionEmbeddings == 16)
        #expect(longrope.shortFactors == [1.0, 1.05, 1.2, 1.5, 2.0, 2.5] && longrope.longFactors == [1.0, 1.5, 3.0, 6.0, 12.0, 20.0])
        // max_position_embeddings / original = 32: sqrt(1 + ln 32 / ln 16) = sqrt(1 + 5/4).
        #expect(abs(longrope.attentionFactor - 1.5) < 1e-12)
    }

    /// The Hub's layouts: `partial_rotary_factor` beside `rope_scaling` or in it, `original_max_position_embeddings`
    /// likewise; `factor` and `attention_factor` when given; the old type name `su`.
    @Test func configurationVariants() throws {
        func config(_ extra: String) throws -> ModelConfig {
            let json =
                #"{"architectures":["Phi3ForCausalLM"],"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"max_position_embeddings":4096"#
                + extra + "}"
            return try ModelConfig(json: Data(json.utf8))
        }
        let factors = #""short_factor":[1,1,1,1,1,1],"long_factor":[2,2,2,2,2,2]"#
        let inside = try config(
            #","rope_scaling":{"type":"su","partial_rotary_factor":0.75,"original_max_position_embeddings":1024,"# + factors + "}")
        #expect(inside.rotaryDimensions == 12)
        let attention = (1 + log(4.0) / log(1024.0)).squareRoot()
        #expect(Self.longrope(inside)?.attentionFactor == attention && Self.longrope(inside)?.originalMaxPositionEmbeddings == 1024)
        let given = try config(
            #","partial_rotary_factor":0.75,"original_max_position_embeddings":1024,"rope_scaling":{"rope_type":"longrope","factor":8,"# + factors
                + "}")
        #expect(Self.longrope(given)?.attentionFactor == (1 + log(8.0) / log(1024.0)).squareRoot())
        let explicit = try config(
            #","partial_rotary_factor":0.75,"original_max_position_embeddings":1024,"rope_scaling":{"rope_type":"longrope","attention_factor":1.25,"#
                + factors + "}")
        #expect(Self.longrope(explicit)?.attentionFactor == 1.25)
        let unextended = try config(
            #","partial_rotary_factor":0.75,"original_max_position_embeddings":4096,"rope_scaling":{"rope_type":"longrope","# + factors + "}")
        #expect(Self.longrope(unextended)?.attentionFactor == 1)
        #expect(try config(#","partial_rotary_factor":0.5"#).rotaryDimensions == 8)

        for (bad, message) in [
            (
                #","partial_rotary_factor":0.75,"original_max_position_embeddings":1024,"rope_scaling":{"rope_type":"longrope","short_factor":[1,1],"long_factor":[1,1]}"#,
                "short_factor of 6"
            ),
            (#","partial_rotary_factor":0.75,"rope_scaling":{"rope_type":"longrope","# + factors + "}", "original_max_position_embeddings"),
            (#","partial_rotary_factor":0.4375"#, "rotates 7 of 16"),
            (#","partial_rotary_factor":0"#, "partial_rotary_factor 0"),
        ] {
            let error = try #require(throws: ModelError.self) { try config(bad) }
            #expect(error.code == .invalidConfig && error.message.contains(message), "\(bad): \(error.message)")
        }
    }

    /// A sequence that grows past `original_max_position_embeddings` while cached is run again with the long factors, as
    /// transformers recomputes it: its logits then equal one pass over the whole sequence, and differ from what the
    /// short factors gave the same position.
    @Test func crossingTheOriginalLengthRefillsTheCache() throws {
        let model = try Fixtures.model(Self.name)
        let tokens = Array(try Fixtures.expected(Self.name).prompt_ids.prefix(24))
        let whole = try model.forward([ForwardSegment(cache: model.makeCache(), tokens: tokens, logits: .all)])[0]
        let cache = model.makeCache()
        let short = try model.forward([ForwardSegment(cache: cache, tokens: Array(tokens.prefix(12)), logits: .all)])[0]
        let rest = try model.forward([ForwardSegment(cache: cache, tokens: Array(tokens.dropFirst(12)), logits: .all)])[0]
        #expect(cache.count == 24 && cache.tokens == tokens)
        #expect(rest.count == 12)
        let difference = zip(rest, whole.suffix(12)).map { maxAbsDifference($0, $1) }.max() ?? .infinity
        #expect(difference < 1e-4, "max |Δ| \(difference)")
        let shortVersusLong = zip(short, whole.prefix(12)).map { maxAbsDifference($0, $1) }.max() ?? 0
        #expect(shortVersusLong > 10 * ForwardTests.tolerance, "the short and long factors agree: max |Δ| \(shortVersusLong)")

        // Truncated back below the original length, the cache is refilled with the short factors again.
        cache.truncate(to: 10)
        let again = try model.forward([ForwardSegment(cache: cache, tokens: [tokens[10], tokens[11]], logits: .all)])[0]
        let back = zip(again, short.suffix(2)).map { maxAbsDifference($0, $1) }.max() ?? .infinity
        #expect(back < 1e-4, "max |Δ| \(back)")
    }

    static func longrope(_ config: ModelConfig) -> LongRopeScaling? {
        guard case .longrope(let scaling) = config.ropeScaling else { return nil }
        return scaling
    }
}
