import Foundation
import ModelText

/// Turns generated token ids into text for a client: complete UTF-8 only, stop strings cut out, and the
/// text that might be the start of a stop string held back until it is known not to be.
struct TextAssembler {
    private var decoder: StreamingDecoder
    private let stops: [String]
    private var held = ""
    private(set) var stopped = false

    init(tokenizer: Tokenizer, stops: [String]) {
        decoder = tokenizer.streamingDecoder(skipSpecialTokens: true)
        self.stops = stops.filter { !$0.isEmpty }
    }

    /// Adds one token. - Returns: the text that can be sent now (possibly empty).
    mutating func feed(_ id: Int32) throws -> String {
        guard !stopped else { return "" }
        held += try decoder.feed(Int(id))
        return release()
    }

    /// The text still held when generation ends.
    mutating func finish() -> String {
        guard !stopped else { return "" }
        held += decoder.finish()
        let text = release()
        let rest = held
        held = ""
        return text + rest
    }

    private mutating func release() -> String {
        if let cut = stops.compactMap({ held.range(of: $0)?.lowerBound }).min() {
            stopped = true
            let text = String(held[..<cut])
            held = ""
            return text
        }
        // Hold back the longest tail of the text that begins some stop string.
        var keep = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, held.count), to: 0, by: -1) where length > keep {
                if held.hasSuffix(stop.prefix(length)) {
                    keep = length
                    break
                }
            }
        }
        let text = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return text
    }
}
