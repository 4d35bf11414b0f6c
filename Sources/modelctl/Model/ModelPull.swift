import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient
import Synchronization

/// `modelctl pull REF`: downloads a model into the daemon's store, showing progress.
struct ModelPull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pull a model from Hugging Face or ModelScope.",
        discussion: """
            REF is a catalog ref (qwen2.5:0.5b) or a repository id (Qwen/Qwen2.5-0.5B-Instruct). Exits 0 only \
            when every file is verified and the version is ready. Interrupting modelctl leaves the pull running \
            in the daemon; pulling again joins it (or resumes from what is on disk).
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Catalog ref or repository id.")
    var ref: String

    @Option(name: .long, help: "huggingface (default) or modelscope.")
    var source: String?

    @Option(name: .long, help: "Branch, tag or commit (default main, or master on ModelScope).")
    var revision: String?

    @Option(name: .long, help: "Only files matching this glob (repeatable).")
    var include: [String] = []

    @Option(name: .long, help: "Leave out files matching this glob (repeatable).")
    var exclude: [String] = []

    @Flag(name: .long, help: "Print every progress event as a JSON line.")
    var json = false

    func run() async throws {
        let body = PullRequestBody(
            model: ref, source: source, revision: revision, include: include.isEmpty ? nil : include,
            exclude: exclude.isEmpty ? nil : exclude)
        let renderer = PullRenderer(mode: json ? .json : (isatty(STDOUT_FILENO) == 1 ? .terminal : .plain))
        do {
            try await global.client().streamLines("/api/v1/models/pull", body: body) { line in
                renderer.handle(line)
                return true
            }
        } catch {
            renderer.finishLine()
            throw ModelctlExit.fail(error)
        }
        renderer.finishLine()
        switch renderer.outcome {
        case .ready: return
        case .failed(let message):
            printError("modelctl: \(message)")
            throw ExitCode(1)
        case nil:
            printError("modelctl: the pull stream ended before the model was ready")
            throw ExitCode(1)
        }
    }
}

/// Turns pull events into a progress bar (terminal), plain lines, or JSON lines.
final class PullRenderer: Sendable {
    enum Mode: Sendable { case terminal, plain, json }
    enum Outcome: Sendable, Equatable { case ready, failed(String) }

    let mode: Mode
    private let state = Mutex<(outcome: Outcome?, lastState: String?, barShown: Bool)>((nil, nil, false))

    init(mode: Mode) { self.mode = mode }

    var outcome: Outcome? { state.withLock { $0.outcome } }

    func handle(_ line: Data) {
        if mode == .json { print(String(decoding: line, as: UTF8.self)) }
        guard let event = try? WireJSON.decoder().decode(PullEvent.self, from: line) else { return }
        state.withLock { state in
            switch event.event {
            case .done: state.outcome = .ready
            case .error: state.outcome = .failed(event.error?.message ?? "the pull failed")
            default: break
            }
        }
        guard mode != .json else { return }
        switch mode {
        case .terminal: renderTerminal(event)
        default: renderPlain(event)
        }
    }

    /// Ends an in-place progress line so later output starts on a fresh line.
    func finishLine() {
        let shown = state.withLock { state in
            defer { state.barShown = false }
            return state.barShown
        }
        if shown { print("") }
    }

    private func renderPlain(_ event: PullEvent) {
        let changed = state.withLock { state in
            defer { state.lastState = event.state.rawValue }
            return state.lastState != event.state.rawValue
        }
        switch event.event {
        case .file:
            if let file = event.file, file.state != "downloading" {
                print("\(file.state) \(file.path) (\(formatBytes(file.totalBytes)))")
            }
        case .done:
            print(
                "ready \(event.repo)@\(event.commit ?? event.revision) \(formatBytes(event.totalBytes))\(event.alreadyPresent == true ? " (already present)" : "") -> \(event.path ?? "")"
            )
        case .error:
            break
        default:
            if changed { print("\(event.state.rawValue) \(event.repo)@\(event.revision)\(event.commit.map { " (\($0.prefix(12)))" } ?? "")") }
        }
    }

    private func renderTerminal(_ event: PullEvent) {
        switch event.event {
        case .done, .error:
            finishLine()
            renderPlain(event)
        case .file where event.file?.state != "downloading":
            finishLine()
            renderPlain(event)
        default:
            guard event.state == .downloading, event.totalBytes > 0 else {
                finishLine()
                renderPlain(event)
                return
            }
            let fraction = Double(event.completedBytes) / Double(event.totalBytes)
            let width = 24
            let filled = min(width, Int(fraction * Double(width)))
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            let speed = event.bytesPerSecond.map { "\(formatBytes(Int64($0)))/s" } ?? "-"
            let eta = event.etaSeconds.map { formatDuration($0) } ?? "-"
            let current =
                event.activeFiles?.first.map { file in
                    " \(file.path) \(file.totalBytes > 0 ? Int(100 * Double(file.completedBytes) / Double(file.totalBytes)) : 0)%"
                } ?? ""
            let text =
                "\(bar) \(Int(fraction * 100))% \(formatBytes(event.completedBytes))/\(formatBytes(event.totalBytes)) \(speed) ETA \(eta) [\(event.filesDone)/\(event.filesTotal)]\(current)"
            print("\r\u{1B}[2K\(text)", terminator: "")
            fflush(nil)
            state.withLock { $0.barShown = true }
        }
    }
}

/// Seconds as `1h02m`, `3m05s`, `12s`.
func formatDuration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    if total >= 3600 { return "\(total / 3600)h\(twoDigits((total % 3600) / 60))m" }
    if total >= 60 { return "\(total / 60)m\(twoDigits(total % 60))s" }
    return "\(total)s"
}
