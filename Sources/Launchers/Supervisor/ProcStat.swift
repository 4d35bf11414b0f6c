import Foundation

/// The fields modeld reads from `/proc/<pid>/stat` (docs/design/supervision.md, Reconciliation at start-up).
package struct ProcStat: Sendable, Hashable {
    package var pid: Int32
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    package var state: Character
    package var parent: Int32
    package var processGroup: Int32
    package var session: Int32
    /// Field 22: clock ticks after boot at which the process started; with the pid it names one process.
    package var startTime: Int64

    /// Reads `/proc/<pid>/stat`; nil when the process does not exist.
    package init?(pid: Int32) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        self.init(parsing: text)
    }

    /// Parses a stat line. The command name (field 2) may hold spaces and parentheses, so fields are
    /// counted after its last `)`.
    package init?(parsing text: String) {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"),
            let pid = Int32(text[..<open].trimmingCharacters(in: .whitespaces))
        else { return nil }
        // After ")": field 3 (state) onwards.
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 20, let state = fields[0].first, let parent = Int32(fields[1]),
            let group = Int32(fields[2]), let session = Int32(fields[3]), let start = Int64(fields[19])
        else { return nil }
        self.pid = pid
        self.state = state
        self.parent = parent
        self.processGroup = group
        self.session = session
        self.startTime = start
    }

    /// Whether the process still runs (exists and is not a zombie).
    package var isRunning: Bool { state != "Z" && state != "X" }

    /// Every process on the machine (those that vanish while being read are skipped).
    package static func all() -> [ProcStat] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { name in Int32(name).flatMap { ProcStat(pid: $0) } }
    }

    /// The processes of a process group.
    package static func members(ofGroup group: Int32) -> [ProcStat] {
        all().filter { $0.processGroup == group }
    }
}
