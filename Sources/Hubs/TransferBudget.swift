import Synchronization

/// The transfers a pull runs at once (its file concurrency). Each file being downloaded holds one; a large file
/// adds parallel ranges only while the pull has transfers to spare. So a pull of several large files runs one
/// stream per file, as `curl --parallel` would, and a large file left alone (or beside small files that have
/// finished) speeds up with ranges.
package final class TransferBudget: Sendable {
    private let active = Mutex(0)
    package let limit: Int

    /// - Parameter limit: transfers at once; `Int.max` lets every large file use all its ranges.
    package init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Takes a transfer for a file, whatever the count: files are already limited by the pull's concurrency.
    package func begin() {
        active.withLock { $0 += 1 }
    }

    /// Takes a transfer for an extra range when one is to spare.
    package func tryBegin() -> Bool {
        active.withLock { active in
            guard active < limit else { return false }
            active += 1
            return true
        }
    }

    package func end() {
        active.withLock { $0 -= 1 }
    }

    /// More transfers run than the limit (a file started while ranges held the spare ones).
    package var isOver: Bool {
        active.withLock { $0 > limit }
    }
}
