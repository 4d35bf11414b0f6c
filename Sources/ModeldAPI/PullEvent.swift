import FoundationEssentials
import Glibc

/// One line of a pull's NDJSON progress stream (`POST /api/v1/pull` and `modelctl pull`).
///
/// Every event carries the whole picture (state, totals, speed), so a client may show any single line;
/// `event` says what changed. A stream ends with a `done` event (state `ready`) or an `error` event
/// (state `failed` or `cancelled`).
///
/// ```json
/// {"event":"progress","job_id":"a1b2c3d4","source":"huggingface","repo":"acme/tiny","revision":"main",
///  "commit":"0123...","state":"downloading","completed_bytes":1048576,"total_bytes":26214423,
///  "files_done":1,"files_total":2,"bytes_per_second":52428800,"eta_seconds":0.48,
///  "file":{"path":"model.safetensors","completed_bytes":1048576,"total_bytes":26214400,"state":"downloading"},
///  "time":"2026-11-21T20:00:00Z"}
/// ```
package struct PullEvent: Codable, Sendable, Hashable {
    /// What the event reports.
    package enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
        /// The job's state changed (queued, resolving, downloading, ...).
        case status
        /// Bytes moved (sent a few times a second while downloading).
        case progress
        /// One file started, finished or was found already present (see `file`).
        case file
        /// The version is ready (`path` is the snapshot directory).
        case done
        /// The pull failed or was cancelled (`error` says why).
        case error
    }

    /// A job's state: `queued`, `resolving`, `downloading`, `ready`, `failed`, `cancelled`.
    package enum State: String, Codable, Sendable, Hashable, CaseIterable {
        case queued, resolving, downloading, ready, failed, cancelled

        package var isFinal: Bool { self == .ready || self == .failed || self == .cancelled }
    }

    /// The file an event is about.
    package struct FileProgress: Codable, Sendable, Hashable {
        package var path: String
        package var completedBytes: Int64
        package var totalBytes: Int64
        /// `downloading`, `verified`, or `present` (already on disk).
        package var state: String

        package init(path: String, completedBytes: Int64, totalBytes: Int64, state: String) {
            self.path = path
            self.completedBytes = completedBytes
            self.totalBytes = totalBytes
            self.state = state
        }

        enum CodingKeys: String, CodingKey {
            case path, state
            case completedBytes = "completed_bytes"
            case totalBytes = "total_bytes"
        }
    }

    /// Why a pull failed: a stable `code` (`gated`, `repoNotFound`, `revisionNotFound`, `rateLimited`,
    /// `diskFull`, `checksumMismatch`, `unsafePath`, `network`, `cancelled`, ...) and a one-line message.
    package struct Failure: Codable, Sendable, Hashable {
        package var code: String
        package var message: String

        package init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    package var event: Kind
    package var jobID: String
    package var source: String
    package var repo: String
    package var revision: String
    package var commit: String?
    package var state: State
    package var completedBytes: Int64
    package var totalBytes: Int64
    package var filesDone: Int
    package var filesTotal: Int
    package var bytesPerSecond: Double?
    package var etaSeconds: Double?
    package var file: FileProgress?
    /// The files downloading right now (progress events).
    package var activeFiles: [FileProgress]?
    /// The snapshot directory, once ready.
    package var path: String?
    package var error: Failure?
    /// True when the version was already complete and nothing was downloaded.
    package var alreadyPresent: Bool?
    package var time: Date

    package init(
        event: Kind, jobID: String, source: String, repo: String, revision: String, commit: String? = nil, state: State,
        completedBytes: Int64 = 0, totalBytes: Int64 = 0, filesDone: Int = 0, filesTotal: Int = 0,
        bytesPerSecond: Double? = nil, etaSeconds: Double? = nil, file: FileProgress? = nil,
        activeFiles: [FileProgress]? = nil, path: String? = nil,
        error: Failure? = nil, alreadyPresent: Bool? = nil, time: Date = Date()
    ) {
        self.event = event
        self.jobID = jobID
        self.source = source
        self.repo = repo
        self.revision = revision
        self.commit = commit
        self.state = state
        self.completedBytes = completedBytes
        self.totalBytes = totalBytes
        self.filesDone = filesDone
        self.filesTotal = filesTotal
        self.bytesPerSecond = bytesPerSecond
        self.etaSeconds = etaSeconds
        self.file = file
        self.activeFiles = activeFiles
        self.path = path
        self.error = error
        self.alreadyPresent = alreadyPresent
        self.time = time
    }

    enum CodingKeys: String, CodingKey {
        case event, source, repo, revision, commit, state, file, path, error, time
        case jobID = "job_id"
        case completedBytes = "completed_bytes"
        case totalBytes = "total_bytes"
        case filesDone = "files_done"
        case filesTotal = "files_total"
        case bytesPerSecond = "bytes_per_second"
        case etaSeconds = "eta_seconds"
        case alreadyPresent = "already_present"
        case activeFiles = "active_files"
    }
}
