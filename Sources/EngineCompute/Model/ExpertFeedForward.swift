import ModelText

/// The sparse feed-forward of a mixture-of-experts layer (``MixtureOfExperts``), as transformers' Qwen3-MoE
/// computes it: a router scores every expert per token, softmax turns the scores into probabilities, the `k`
/// most probable experts' gated MLPs run on the token (their probabilities divided by their sum when
/// `norm_topk_prob` is set), and the weighted outputs are added to the residual stream.
///
/// The experts' matrices stay where the weight source maps them: a pass reads only the chosen experts'
/// weights, and each chosen expert once for all the tokens that chose it.
struct ExpertFeedForward {
    let router: WeightMatrix
    /// Each expert is a SwiGLU MLP of `moe_intermediate_size`, without biases.
    let experts: [GatedMLP]
    let topK: Int
    let normalizesTopK: Bool

    /// Wraps layer `layer`'s router (`mlp.gate.weight`) and experts (`mlp.experts.E.{gate,up,down}_proj.weight`).
    init(layer: Int, config: MixtureOfExperts, hidden: Int, matrix: (String, Int, Int) throws -> WeightMatrix) throws {
        let p = "model.layers.\(layer).mlp."
        let width = config.intermediateSize
        router = try matrix(p + "gate.weight", config.expertCount, hidden)
        experts = try (0..<config.expertCount).map { e in
            GatedMLP(
                gate: try matrix(p + "experts.\(e).gate_proj.weight", width, hidden),
                up: try matrix(p + "experts.\(e).up_proj.weight", width, hidden),
                down: try matrix(p + "experts.\(e).down_proj.weight", hidden, width),
                activation: .silu
            )
        }
        topK = config.expertsPerToken
        normalizesTopK = config.normalizesTopK
    }

    /// The chosen experts of each of `tokens` rows of `normed` and their weights, grouped by expert:
    /// `result[e]` lists the tokens that chose expert `e`.
    func route(
        _ normed: UnsafePointer<Float>, hidden: Int, tokens: Int, pool: ThreadPool, instructionSet: InstructionSet
    ) -> [[(token: Int, weight: Float)]] {
        let count = experts.count
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: tokens * count)
        defer { scores.deallocate() }
        matmul(router, x: normed, xStride: hidden, tokens: tokens, y: scores, yStride: count, pool: pool, instructionSet: instructionSet)
        var chosen = [[(token: Int, weight: Float)]](repeating: [], count: count)
        var picked = [Int](repeating: 0, count: topK)
        for t in 0..<tokens {
            let row = scores + t * count
            VectorOps.softmax(row, count: count)
            // The k largest by repeated selection (k is small); ties go to the lower index, as torch.topk's do.
            var sum: Float = 0
            for slot in 0..<topK {
                var best = -1
                for e in 0..<count where (best < 0 || row[e] > row[best]) && !picked[0..<slot].contains(e) { best = e }
                picked[slot] = best
                sum += row[best]
            }
            for e in picked { chosen[e].append((t, normalizesTopK ? row[e] / sum : row[e])) }
        }
        return chosen
    }

    /// Adds the experts' outputs for `tokens` rows of `normed` (`hidden` floats each) to the rows of `x`.
    func apply(
        normed: UnsafePointer<Float>, x: UnsafeMutablePointer<Float>, hidden: Int, tokens: Int, pool: ThreadPool,
        instructionSet: InstructionSet
    ) {
        let chosen = route(normed, hidden: hidden, tokens: tokens, pool: pool, instructionSet: instructionSet)
        let width = experts[0].intermediateSize
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: tokens * hidden)
        let gate = UnsafeMutablePointer<Float>.allocate(capacity: tokens * width)
        let up = UnsafeMutablePointer<Float>.allocate(capacity: tokens * width)
        let output = UnsafeMutablePointer<Float>.allocate(capacity: tokens * hidden)
        defer {
            for buffer in [gathered, gate, up, output] { buffer.deallocate() }
        }
        for (index, expert) in experts.enumerated() where !chosen[index].isEmpty {
            let rows = chosen[index]
            for (i, row) in rows.enumerated() {
                (gathered + i * hidden).update(from: normed + row.token * hidden, count: hidden)
            }
            expert.run(
                x: gathered, xStride: hidden, tokens: rows.count, y: output, yStride: hidden, accumulate: false, scratch: (gate, up),
                pool: pool, instructionSet: instructionSet)
            for (i, row) in rows.enumerated() {
                let target = x + row.token * hidden, source = output + i * hidden
                for j in 0..<hidden { target[j] += row.weight * source[j] }
            }
        }
    }
}
