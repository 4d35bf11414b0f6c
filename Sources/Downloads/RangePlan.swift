import Foundation

/// The progress of a ranged download, kept beside the partial file (`<partial>.ranges`) so a restart
/// continues each range where it stopped.
struct RangePlan: Codable, Sendable {
    struct Part: Codable, Sendable {
        var start: Int64
        /// Inclusive.
        var end: Int64
        /// Bytes of this range already written.
        var done: Int64
        var length: Int64 { end - start + 1 }
    }

    var size: Int64
    var hash: String
    var parts: [Part]

    /// A plan of `count` equal parts.
    init(size: Int64, hash: String, count: Int) {
        self.size = size
        self.hash = hash
        let count = Int64(max(1, count))
        let step = (size + count - 1) / count
        parts = stride(from: Int64(0), to: size, by: Int(step)).map { start in
            Part(start: start, end: min(start + step, size) - 1, done: 0)
        }
    }

    /// A plan for `workers` transfers at once: at least `workers` parts, and more, smaller ones (8-64 MiB,
    /// about four per worker) for a large file. The workers take the parts in file order, so the downloaded
    /// prefix that the hash follows grows steadily and little is left to hash once the last part is in.
    init(size: Int64, hash: String, workers: Int) {
        let workers = Int64(max(1, workers))
        let partSize = min(64 << 20, max(8 << 20, size / (4 * workers)))
        self.init(size: size, hash: hash, count: Int(max(workers, (size + partSize - 1) / partSize)))
    }

    static func load(_ url: URL, for item: DownloadItem) -> RangePlan? {
        guard let data = try? Data(contentsOf: url), let plan = try? JSONDecoder().decode(RangePlan.self, from: data),
            plan.size == item.size, plan.hash == item.hash
        else { return nil }
        return plan
    }

    /// Bytes already downloaded of a partial file: the ranges' progress when there is a plan, else its size.
    static func bytesOnDisk(partial: URL) -> Int64 {
        if let data = try? Data(contentsOf: URL(filePath: partial.path + ".ranges")),
            let plan = try? JSONDecoder().decode(RangePlan.self, from: data)
        {
            return plan.parts.reduce(0) { $0 + $1.done }
        }
        return fileSize(partial.path)
    }

    /// Writes the plan beside the partial file, replacing the one before (a rename, so a reader never sees half
    /// of one). Not flushed to the disk: a process that dies leaves it in the page cache, and after a power cut
    /// the file's hash, checked before anything is used, catches ranges the plan counted but the disk lost. So a
    /// transfer thread never waits on a journal commit here (`createFile` flushed each save, stalling the
    /// thread up to 77 ms).
    func save(_ url: URL) {
        guard let data = try? JSONEncoder().encode(self) else { return }
        let temporary = url.path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let complete = (try? FileHandle(fileDescriptor: fd, closeOnDealloc: false).write(contentsOf: data)) != nil
        close(fd)
        if complete {
            rename(temporary, url.path)
        } else {
            unlink(temporary)
        }
    }
}
