import FakeHub
import Foundation
import GRDB
import Glibc
import ModeldAPI
import ModeldClient
import Synchronization
import Testing

import struct BuiltinEngine.SeededGenerator

/// The real `modeld` is SIGKILLed at random moments of pulls (Hugging Face and ModelScope), imports, starts and stops,
/// and started again on the same data directory each time. After every kill: the daemon's engines are gone with it,
/// the caches hold only complete files, the store opens, a killed import's staging files are removed, every `ready`
/// version verifies (read from the SQLite file and compared byte for byte, and through `POST /api/v1/models/verify`),
/// the helpers the engines left behind are stopped by the next daemon, and the next pull resumes where the killed one
/// stopped.
///
/// The moments come from a generator whose seed is printed; `MODELD_KILL_SEED=<seed>` replays them.
@Suite("SIGKILL anywhere")
struct KillAnywhereTests {
    @Test("SIGKILLed mid-pull, mid-import, mid-start and mid-stop, modeld comes back consistent every time")
    func killAnywhere() async throws {
        let seed = ProcessInfo.processInfo.environment["MODELD_KILL_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        print("kill-anywhere seed \(seed): MODELD_KILL_SEED=\(seed) replays these kill moments")
        var random = SeededGenerator(seed: seed)
        let hf = ExpectedRepo(
            source: "huggingface", repo: "acme/big",
            files: [
                FakeFile("config.json", #"{"model_type": "qwen2"}"#),
                FakeFile("tokenizer.json", randomData(1 << 20, &random), lfs: false),
                FakeFile("model-00001-of-00002.safetensors", randomData(5 << 20, &random)),
                FakeFile("model-00002-of-00002.safetensors", randomData(5 << 20, &random)),
            ])
        let ms = ExpectedRepo(
            source: "modelscope", repo: "acme/msbig",
            files: [FakeFile("configuration.json", "{}"), FakeFile("ms-model.safetensors", randomData(6 << 20, &random))])
        let moments = random
        try await FakeHub.withRunning { hub in
            hub.addRepo(hf.repo, commits: [FakeCommit(files: hf.files)])
            hub.addModelScopeRepo(ms.repo, commits: [FakeCommit(files: ms.files)])
            let harness = try await KillHarness(hub: hub, repos: [hf, ms], random: moments, seed: seed)
            do {
                try await harness.pullWithKills(hf, kills: 3)
                try await harness.pullWithKills(ms, kills: 2)
                try await harness.importWithKills(hf, kills: 3)
                try await harness.runsWithKills(hf, rounds: 2)
                try await harness.shutDown()
            } catch {
                harness.abandon()
                throw error
            }
            let tally = harness.tally.withLock { $0 }
            print("kill-anywhere seed \(seed): \(tally)")
            // Not vacuous: kills landed inside transfers, imports, start-ups and shutdowns, and pulls resumed.
            #expect(tally.midPull >= 2, "seed \(seed): too few kills landed mid-transfer: \(tally)\n\(tally.pullMoments.joined(separator: "\n"))")
            #expect(tally.resumedRanges >= 1, "seed \(seed): no pull resumed a partial file with a range request: \(tally)")
            #expect(tally.midImport >= 1, "seed \(seed): no kill landed mid-import: \(tally)")
            #expect(tally.whileStarting >= 1, "seed \(seed): no kill landed while an engine was starting: \(tally)")
            #expect(tally.whileStopping >= 1, "seed \(seed): no kill landed while an engine was stopping: \(tally)")
        }
    }
}

/// A repository the fake hub serves, with the content every stored copy must have.
struct ExpectedRepo: Sendable {
    var source: String
    var repo: String
    var files: [FakeFile]
    var commit: String { FakeCommit(files: files).sha }
    var totalBytes: Int64 { files.reduce(0) { $0 + Int64($1.data.count) } }

    /// The hash the store records for a file: Hugging Face's etag (sha256 for LFS, git sha1 otherwise) or ModelScope's sha256.
    func recordedHash(_ file: FakeFile) -> String { source == "huggingface" ? file.etag : file.sha256 }

    /// The repository's directory in the cache: Hugging Face's `models--owner--name`, ModelScope's `owner/name`.
    func cacheDirectory(in root: URL) -> URL {
        source == "huggingface"
            ? root.appending(path: "huggingface/hub/models--\(repo.replacingOccurrences(of: "/", with: "--"))")
            : root.appending(path: "modelscope/\(repo)")
    }

    /// Where the cache keeps each content once, named by its hash.
    func blobsDirectory(in root: URL) -> URL {
        cacheDirectory(in: root).appending(path: source == "huggingface" ? "blobs" : ".blobs")
    }

    /// The partial download of a file in `<data>/tmp` (downloads go there, never into the cache).
    func partial(_ file: FakeFile, in root: URL) -> URL {
        let prefix = source == "huggingface" ? "hf" : "ms"
        return root.appending(path: "tmp/\(prefix)--\(repo.replacingOccurrences(of: "/", with: "--"))--\(recordedHash(file)).part")
    }
}

/// A version as the SQLite file records it, with its files.
struct StoredVersion: Sendable {
    var commit: String
    var state: String
    var path: String?
    var source: String
    var repo: String
    var files: [StoredFile]
}

struct StoredFile: Sendable {
    var path: String
    var size: Int64
    var hash: String
}

/// What the kills hit, counted so the test can tell that they landed where they were meant to.
struct KillTally: Sendable, CustomStringConvertible {
    var kills = 0
    /// Kills while a pull was downloading, with some but not all bytes in.
    var midPull = 0
    /// Partial files that the next request for the file resumed with `Range: bytes=<size>-`.
    var resumedRanges = 0
    /// Kills while an import was under way: its staging directory in `tmp/` existed and its reply had not come.
    var midImport = 0
    /// Kills while the store had a run `starting`, or `stopping`.
    var whileStarting = 0
    var whileStopping = 0
    /// Where each pull kill landed, for a failure message.
    var pullMoments: [String] = []

    var description: String {
        "\(kills) kills: \(midPull) mid-pull, \(resumedRanges) ranges resumed, \(midImport) mid-import, "
            + "\(whileStarting) while starting, \(whileStopping) while stopping"
    }
}

/// Kills the daemon once, from whichever thread sees the moment first, and remembers what it saw then.
final class KillSwitch<Seen: Sendable>: Sendable {
    let pid: Int32
    private let state = Mutex<(fired: Bool, seen: Seen?)>((false, nil))

    init(pid: Int32) { self.pid = pid }

    func fire(seeing seen: Seen?) {
        let first = state.withLock { state -> Bool in
            guard !state.fired else { return false }
            state = (true, seen)
            return true
        }
        if first { kill(pid, SIGKILL) }
    }

    var seen: Seen? { state.withLock { $0.seen } }
}

/// One data directory, one fake hub, and the `modeld` that is killed and started again on them.
final class KillHarness: @unchecked Sendable {
    let hub: FakeHub
    let repos: [ExpectedRepo]
    let seed: UInt64
    let root: URL
    /// Outside the data directory: the archive, the grandchildren's pid file.
    let work: URL
    let environment: [String: String]
    let tally = Mutex(KillTally())
    private(set) var launch: ModeldLaunch
    private(set) var client: ModeldClient
    private var random: SeededGenerator

    init(hub: FakeHub, repos: [ExpectedRepo], random: SeededGenerator, seed: UInt64) async throws {
        self.hub = hub
        self.repos = repos
        self.random = random
        self.seed = seed
        let id = UUID().uuidString.prefix(8)
        root = FileManager.default.temporaryDirectory.appending(path: "modeld-kill-\(id)")
        work = FileManager.default.temporaryDirectory.appending(path: "modeld-kill-work-\(id)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        environment = [
            "HOME": root.path, "MODELD_DATA_DIR": root.path, "MODELD_ENGINE_PORTS": enginePortBlock(),
            "HF_ENDPOINT": hub.endpoint, "MODELSCOPE_ENDPOINT": hub.endpoint,
            // Slow enough that a kill lands mid-transfer, with several progress events on the way even on a busy
            // machine: about 5 s for the Hugging Face repository.
            "MODELD_MAX_DOWNLOAD_RATE": "2500K",
            "MODELD_VLLM_COMMAND": productsDirectory.appending(path: "fake-engine").path,
            // An engine that takes a while to start and to stop, and leaves a helper process in its group that
            // ignores SIGTERM and has no parent-death signal (as engines' worker processes do). Its command line
            // names the pid file, so it is found by this test's unique directory.
            "FAKE_ENGINE_START_DELAY": "1", "FAKE_ENGINE_STOP_DELAY": "1.5",
            "FAKE_ENGINE_GRANDCHILD_PIDFILE": root.appending(path: "grandchild.pid").path,
        ]
        launch = try await ModeldLaunch(environment: environment)
        client = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://127.0.0.1:\(launch.port)"))
        try await waitUntilReady()
    }

    // MARK: The scenarios

    /// Pulls `repo` with `kills` SIGKILLs on the way, each followed by a restart, then lets the pull finish. A kill
    /// comes when the progress passes a random fraction of what is left, or after a random delay (anywhere:
    /// resolving, downloading, installing, or just after the end).
    func pullWithKills(_ repo: ExpectedRepo, kills: Int) async throws {
        let body = PullRequestBody(model: repo.repo, source: repo.source)
        for round in 0...kills {
            let mark = hub.requests.count
            let partials = partialSizes(repo)
            if round == kills {
                // What the killed pulls left to fetch: the files with no blob yet, less their partial files.
                let missing = repo.files.reduce(Int64(0)) { sum, file in
                    sum + (hasBlob(repo, file) ? 0 : Int64(file.data.count) - (partials[file.path] ?? 0))
                }
                let servedBefore = served(repo)
                let last = Mutex<PullEvent?>(nil)
                try await client.streamLines("/api/v1/models/pull", body: body) { line in
                    last.withLock { $0 = try? WireJSON.decoder().decode(PullEvent.self, from: line) }
                    return true
                }
                let done = last.withLock { $0 }
                #expect(
                    done?.event == .done && done?.state == .ready,
                    "\(context) the pull after the last restart did not finish: \(String(describing: done))\n\(launch.log)")
                checkResumed(repo, partials: partials, since: mark)
                // Nothing already on disk went over the wire again.
                let fetched = served(repo) - servedBefore
                #expect(fetched <= missing, "\(context) \(repo.repo): the last pull fetched \(fetched) bytes, but only \(missing) were missing")
                break
            }
            let byProgress = random.nextUnit() < 0.6
            let fraction = 0.1 + 0.8 * random.nextUnit()
            let delay = Duration.milliseconds(Int(random.nextUnit() * 1500))
            let killer = KillSwitch<PullEvent>(pid: launch.process.processIdentifier)
            let last = Mutex<PullEvent?>(nil)
            let target = Mutex<Int64?>(nil)
            let timer = Task {
                guard !byProgress else { return }
                try? await Task.sleep(for: delay)
                killer.fire(seeing: last.withLock { $0 })
            }
            do {
                try await client.streamLines("/api/v1/models/pull", body: body) { line in
                    guard let event = try? WireJSON.decoder().decode(PullEvent.self, from: line) else { return true }
                    last.withLock { $0 = event }
                    guard byProgress, event.state == .downloading, event.completedBytes < event.totalBytes else { return true }
                    let goal = target.withLock { goal in
                        if goal == nil { goal = event.completedBytes + Int64(Double(event.totalBytes - event.completedBytes) * fraction) }
                        return goal!
                    }
                    guard event.completedBytes >= goal else { return true }
                    killer.fire(seeing: event)
                    return false
                }
            } catch {
                // The daemon died under the stream.
            }
            await timer.value
            // A pull that ended before its moment is killed now: just after a pull is a moment too.
            killer.fire(seeing: last.withLock { $0 })
            let seen = killer.seen
            let moment =
                "pull \(repo.repo) round \(round) (\(byProgress ? "at \(Int(fraction * 100))% of the rest" : "after \(delay)")), "
                + "killed at \(seen.map { "\($0.state.rawValue) \($0.completedBytes)/\($0.totalBytes)" } ?? "no event")"
            if let seen, seen.state == .downloading, seen.completedBytes > 0, seen.completedBytes < seen.totalBytes {
                tally.withLock { $0.midPull += 1 }
            }
            tally.withLock { $0.pullMoments.append(moment) }
            checkResumed(repo, partials: partials, since: mark)
            try await afterKill(moment)
        }
    }

    /// Exports the ready version, removes it, and imports the archive with `kills` SIGKILLs on the way (each at a random
    /// fraction of the upload once the import has begun, or after a random delay), then lets the import finish.
    /// The upload is throttled so that the moments fall inside it.
    func importWithKills(_ repo: ExpectedRepo, kills: Int) async throws {
        let archive = work.appending(path: "archive.tar")
        try await client.download("/api/v1/models/\(repo.repo)/export?source=\(repo.source)&format=tar", to: archive.path)
        let removed: RemoveResult = try await client.call(
            "POST", "/api/v1/models/remove", body: VersionSelector(model: repo.repo, source: repo.source))
        #expect(removed.removed.count == 1)
        let size = Int64(try FileManager.default.attributesOfItem(atPath: archive.path)[.size] as? Int ?? 0)
        for round in 0...kills {
            let finished = Mutex(false)
            let upload = Task {
                defer { finished.withLock { $0 = true } }
                return try await runProcess(
                    URL(filePath: "/usr/bin/curl"),
                    [
                        "-sS", "--limit-rate", "4M", "-X", "POST", "-H", "Content-Type: application/octet-stream", "-T", archive.path,
                        "http://127.0.0.1:\(self.launch.port)/api/v1/models/import",
                    ])
            }
            if round == kills {
                let result = try await upload.value
                let reply = try? WireJSON.decoder().decode(Envelope<ImportResult>.self, from: Data(result.stdout.utf8))
                #expect(
                    reply?.data?.version.state == "ready",
                    "\(context) the import after the last restart failed: \(result.stdout)\(result.stderr)\n\(launch.log)")
                break
            }
            let byBytes = random.nextUnit() < 0.6
            let fraction = 0.05 + 0.9 * random.nextUnit()
            let delay = Duration.milliseconds(Int(random.nextUnit() * 3500))
            let killer = KillSwitch<Int64>(pid: launch.process.processIdentifier)
            if byBytes {
                // The importer stages a file's bytes as they arrive, but the whole archive may be in before the
                // first staged byte shows: the moment is a fraction of the upload (at curl's 4 MB/s) once the
                // import has begun (its staging directory exists).
                try await waitFor("the import's staging directory", timeout: .seconds(60)) {
                    self.importStagingExists() || finished.withLock { $0 }
                }
                try await Task.sleep(for: .seconds(fraction * Double(size) / 4_000_000))
            } else {
                try await Task.sleep(for: delay)
            }
            let staged = stagedImportBytes()
            let underWay = importStagingExists()
            let uploaded = finished.withLock { $0 }
            killer.fire(seeing: staged)
            _ = try await upload.value
            if underWay && !uploaded { tally.withLock { $0.midImport += 1 } }
            let moment =
                "import round \(round) (\(byBytes ? "at \(Int(fraction * 100))% of the upload" : "after \(delay)")), killed with \(staged) bytes staged"
            try await afterKill(moment)
        }
    }

    /// Starts a run and stops it, `rounds` times, each with a SIGKILL at a random moment of the engine's start-up and
    /// of its shutdown. After the restart the run comes back (it was recorded as wanted running) or is started anew
    /// (the kill came before it was recorded); after the stop it stays stopped or, when the kill came before the stop
    /// was recorded, is stopped again, killed once it shows `stopping`.
    func runsWithKills(_ repo: ExpectedRepo, rounds: Int) async throws {
        for round in 0..<rounds {
            let name = "kill-\(round)"
            let start = StartRequest(model: repo.repo, engine: "vllm", name: name, source: repo.source)
            // The engine needs at least 1 s (FAKE_ENGINE_START_DELAY) to be ready: a kill within it lands while it
            // starts, or before the run is even recorded.
            let startDelay = Duration.milliseconds(Int(random.nextUnit() * 1000))
            let starting = Task { try? await self.client.call("POST", "/api/v1/models/start", body: start, as: RunSummary.self) }
            try await Task.sleep(for: startDelay)
            try await killDuring("start \(name) round \(round) (after \(startDelay))", starting)

            // Back by itself when it was recorded; else started now.
            if try await run(name) == nil {
                _ = try await client.call("POST", "/api/v1/models/start", body: start, as: RunSummary.self)
            }
            try await waitFor("\(name) to be ready", timeout: .seconds(60)) { try await self.run(name)?.state == "ready" }

            // A stop takes 1.5 s (FAKE_ENGINE_STOP_DELAY): a kill within it lands while it stops, or before the stop is
            // recorded.
            let stopDelay = Duration.milliseconds(Int(random.nextUnit() * 1400))
            let stopping = Task { try? await self.client.call("POST", "/api/v1/models/running/\(name)/stop", as: RunSummary.self) }
            try await Task.sleep(for: stopDelay)
            try await killDuring("stop \(name) round \(round) (after \(stopDelay))", stopping)
            if let state = try await run(name)?.state, state != "stopped" {
                // The kill came before the stop was recorded: the run came back. Stop it again, killed mid-stop.
                try await waitFor("\(name) to be ready again", timeout: .seconds(60)) { try await self.run(name)?.state == "ready" }
                let again = Task { try? await self.client.call("POST", "/api/v1/models/running/\(name)/stop", as: RunSummary.self) }
                try await waitFor("\(name) to be stopping", timeout: .seconds(30)) { try await self.run(name)?.state == "stopping" }
                try await killDuring("stop \(name) again (once stopping)", again)
            }
            let final = try await run(name)?.state
            #expect(final == "stopped", "\(context) \(name) is \(final ?? "gone") after a stop and a restart")
        }
    }

    /// Stops the daemon cleanly (SIGTERM) and checks that nothing of its engines outlives it.
    func shutDown() async throws {
        kill(launch.process.processIdentifier, SIGTERM)
        try await waitForExit(launch.process)
        #expect(launch.process.terminationReason == .exit && launch.process.terminationStatus == 0, "\(context)\n\(launch.log)")
        try await waitFor("the engines to be gone after SIGTERM", timeout: .seconds(30)) { self.engineProcesses().isEmpty }
        checkCaches("after the last stop")
        try? FileManager.default.removeItem(at: root)
        try? FileManager.default.removeItem(at: work)
    }

    /// After a failure: kills the daemon and whatever of its engines is left (by pid), and removes the directories.
    func abandon() {
        kill(launch.process.processIdentifier, SIGKILL)
        for process in engineProcesses() { kill(process.pid, SIGKILL) }
        try? FileManager.default.removeItem(at: root)
        try? FileManager.default.removeItem(at: work)
    }

    // MARK: Kill, check, restart, check

    /// Kills the daemon while `task` (a start or a stop request) runs, and restarts it.
    private func killDuring(_ moment: String, _ task: Task<RunSummary?, Never>) async throws {
        kill(launch.process.processIdentifier, SIGKILL)
        _ = await task.value
        try await afterKill(moment)
    }

    /// After a SIGKILL: waits for the daemon to be gone, counts what the store says its runs were doing, checks that its
    /// engines died with it and that the caches hold only complete files, starts the daemon again on the same data
    /// directory, and checks the versions and that the helpers left behind by the killed daemon's engines are stopped.
    private func afterKill(_ moment: String) async throws {
        try await waitForExit(launch.process)
        #expect(launch.process.terminationReason == .uncaughtSignal, "\(context) \(moment): modeld was not killed: \(launch.log)")
        let runStates = storedRunStates()
        tally.withLock { tally in
            tally.kills += 1
            if runStates.contains("starting") { tally.whileStarting += 1 }
            if runStates.contains("stopping") { tally.whileStopping += 1 }
        }
        // Engines have the parent-death signal: they die with the daemon. Their helpers have not, and wait for the next
        // daemon to stop them.
        let left = engineProcesses()
        let engines = left.filter { $0.arguments.dropFirst().first != "grandchild" }
        try await waitFor("\(moment): engines to die with the daemon", timeout: .seconds(10)) { engines.allSatisfy { !isAlive($0.pid) } }
        checkCaches(moment)

        launch = try await ModeldLaunch(environment: environment)
        client = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://127.0.0.1:\(launch.port)"))
        try await waitUntilReady()
        // What a killed import had staged is of no use to anyone: the next daemon removes it.
        let staging = children(of: root.appending(path: "tmp")).filter { $0.lastPathComponent.hasPrefix("import-") }
        #expect(staging.isEmpty, "\(context) \(moment): import staging left in tmp/ after the restart: \(staging.map(\.lastPathComponent))")
        try await checkVersions(moment)
        let helpers = left.filter { $0.arguments.dropFirst().first == "grandchild" }
        try await waitFor(
            "\(moment): the killed daemon's engine helpers \(helpers.map(\.pid)) to be stopped by the next daemon", timeout: .seconds(20)
        ) {
            helpers.allSatisfy { !isAlive($0.pid) }
        }
    }

    /// Waits until the daemon answers `/health` and has reconciled the recorded runs (it logs "modeld ready").
    private func waitUntilReady() async throws {
        try await waitFor("modeld to answer /health and be ready", timeout: .seconds(30)) {
            (try? await self.client.health()) != nil && self.launch.log.contains("modeld ready")
        }
    }

    /// Every `ready` version, as the SQLite file records it and as the daemon's verify reports it, has every file of
    /// its repository with the recorded size and hash, byte for byte.
    private func checkVersions(_ moment: String) async throws {
        var configuration = Configuration()
        configuration.readonly = true
        let database = try DatabaseQueue(path: root.appending(path: "modeld.sqlite").path, configuration: configuration)
        let versions = try await database.read { db in
            try Row.fetchAll(
                db,
                sql:
                    #"SELECT versions.id, versions."commit", versions.state, versions.path, models.source, models.repo FROM versions JOIN models ON models.id = versions.model_id"#
            )
            .map { row in
                let files = try Row.fetchAll(db, sql: "SELECT path, size, hash FROM files WHERE version_id = ?", arguments: [row["id"] as Int64])
                return StoredVersion(
                    commit: row["commit"], state: row["state"], path: row["path"], source: row["source"], repo: row["repo"],
                    files: files.map { StoredFile(path: $0["path"], size: $0["size"], hash: $0["hash"]) })
            }
        }
        // Right after a restart no pull runs: a version still `pending` or `downloading` would claim one that is not.
        let claiming = versions.filter { $0.state == "pending" || $0.state == "downloading" }
        #expect(claiming.isEmpty, "\(context) \(moment): versions left \(claiming.map { "\($0.repo) \($0.state)" }) after the restart")
        for version in versions where version.state == "ready" {
            let place = "\(context) \(moment): ready version \(version.repo)@\(version.commit)"
            guard let expected = repos.first(where: { $0.source == version.source && $0.repo == version.repo }), let path = version.path else {
                Issue.record("\(place) is not one this test made, or has no path")
                continue
            }
            if expected.source == "huggingface" { #expect(version.commit == expected.commit, "\(place): wrong commit") }
            #expect(Set(version.files.map(\.path)) == Set(expected.files.map(\.path)), "\(place): files \(version.files.map(\.path))")
            for stored in version.files {
                guard let file = expected.files.first(where: { $0.path == stored.path }) else { continue }
                #expect(stored.size == Int64(file.data.count), "\(place): \(stored.path) size")
                #expect(stored.hash == expected.recordedHash(file), "\(place): \(stored.path) hash")
                let content = try? Data(contentsOf: URL(filePath: path).appending(path: stored.path))
                #expect(content == file.data, "\(place): \(stored.path) does not hold the file's bytes")
            }
        }
        let local: [LocalVersionInfo] = try await client.call("GET", "/api/v1/models/local")
        for version in local where version.state == "ready" {
            let results: [VerifyResult] = try await client.call(
                "POST", "/api/v1/models/verify", body: VersionSelector(model: version.repo, source: version.source, revision: version.commit))
            #expect(!results.isEmpty && results.allSatisfy(\.intact), "\(context) \(moment): verify \(version.repo)@\(version.commit): \(results)")
        }
    }

    /// The caches hold complete files only: every blob has exactly the content its name promises, and every snapshot
    /// (version directory) holds nothing but links, named as the repository's files, to the blobs of those files.
    /// Partial files belong in `<data>/tmp`.
    private func checkCaches(_ moment: String) {
        for repo in repos {
            let directory = repo.cacheDirectory(in: root)
            let blobs = repo.blobsDirectory(in: root)
            let snapshots: [URL]
            let linkPrefix: (Int) -> String
            if repo.source == "huggingface" {
                snapshots = children(of: directory.appending(path: "snapshots"))
                linkPrefix = { depth in String(repeating: "../", count: depth + 2) + "blobs/" }
            } else {
                snapshots = children(of: directory).filter { $0.lastPathComponent != blobs.lastPathComponent }
                linkPrefix = { depth in String(repeating: "../", count: depth + 1) + ".blobs/" }
            }
            let place = "\(context) \(moment): \(repo.repo)"
            for blob in children(of: blobs) {
                let file = repo.files.first { repo.recordedHash($0) == blob.lastPathComponent }
                #expect(file != nil, "\(place): \(blob.lastPathComponent) in \(blobs.path) is not a blob's name")
                if let file { #expect((try? Data(contentsOf: blob)) == file.data, "\(place): blob \(blob.lastPathComponent) is incomplete or wrong") }
            }
            for snapshot in snapshots {
                for (relative, kind) in entries(under: snapshot) where kind != .typeDirectory {
                    let file = repo.files.first { $0.path == relative }
                    #expect(
                        kind == .typeSymbolicLink && file != nil,
                        "\(place): \(snapshot.lastPathComponent)/\(relative) is not a link named as a file of the repository")
                    guard let file else { continue }
                    let depth = relative.split(separator: "/").count - 1
                    let target = try? FileManager.default.destinationOfSymbolicLink(atPath: snapshot.appending(path: relative).path)
                    #expect(target == linkPrefix(depth) + repo.recordedHash(file), "\(place): \(relative) links to \(target ?? "nothing")")
                    #expect(
                        (try? Data(contentsOf: snapshot.appending(path: relative))) == file.data, "\(place): \(relative) does not read as the file")
                }
            }
        }
    }

    /// The next request for each file that the killed pull left partly downloaded continues it: `Range: bytes=<size>-`.
    private func checkResumed(_ repo: ExpectedRepo, partials: [String: Int64], since mark: Int) {
        let requests = hub.requests.dropFirst(mark)
        for file in repo.files where file.lfs {
            guard let have = partials[file.path], have > 0, have < file.data.count,
                let first = requests.first(where: { $0.origin == .cdn && $0.method == "GET" && $0.path == "/blob/\(file.sha256)" })
            else { continue }
            #expect(
                first.range == "bytes=\(have)-",
                "\(context) \(repo.repo)/\(file.path): \(have) bytes on disk, but the next request asked for \(first.range ?? "everything")")
            if first.range == "bytes=\(have)-" { tally.withLock { $0.resumedRanges += 1 } }
        }
    }

    // MARK: Looking

    /// The runs' states in the store (read while no daemon runs).
    private func storedRunStates() -> [String] {
        var configuration = Configuration()
        configuration.readonly = true
        guard let database = try? DatabaseQueue(path: root.appending(path: "modeld.sqlite").path, configuration: configuration) else { return [] }
        return (try? database.read { db in try String.fetchAll(db, sql: "SELECT state FROM runs") }) ?? []
    }

    /// A run by name, nil when there is none.
    private func run(_ name: String) async throws -> RunSummary? {
        try await client.call("GET", "/api/v1/models/running", as: [RunSummary].self).first { $0.name == name }
    }

    /// Body bytes the fake hub served of the repository's files so far.
    private func served(_ repo: ExpectedRepo) -> Int64 {
        repo.files.reduce(0) { $0 + Int64(hub.servedBytes($1.path)) }
    }

    /// Whether the cache holds the file's blob.
    private func hasBlob(_ repo: ExpectedRepo, _ file: FakeFile) -> Bool {
        FileManager.default.fileExists(atPath: repo.blobsDirectory(in: root).appending(path: repo.recordedHash(file)).path)
    }

    /// Bytes of each partial download on disk, by file path.
    private func partialSizes(_ repo: ExpectedRepo) -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: repo.files.map { ($0.path, fileSize(repo.partial($0, in: root))) })
    }

    /// Whether an import is under way: a staging directory (`<data>/tmp/import-*`) exists.
    private func importStagingExists() -> Bool {
        children(of: root.appending(path: "tmp")).contains { $0.lastPathComponent.hasPrefix("import-") }
    }

    /// Bytes written so far into import staging directories (`<data>/tmp/import-*`).
    private func stagedImportBytes() -> Int64 {
        children(of: root.appending(path: "tmp")).filter { $0.lastPathComponent.hasPrefix("import-") }
            .flatMap { children(of: $0) }.reduce(0) { $0 + fileSize($1) }
    }

    /// Live fake-engine processes (engines and their helpers) of this test's data directory, found in `/proc` by
    /// their command lines (an engine's names its snapshot, a helper's its pid file).
    func engineProcesses() -> [(pid: Int32, arguments: [String])] {
        return children(of: URL(filePath: "/proc")).compactMap { entry in
            guard let pid = Int32(entry.lastPathComponent),
                let data = FileHandle(forReadingAtPath: entry.appending(path: "cmdline").path).map({ handle in
                    defer { try? handle.close() }
                    return (try? handle.readToEnd()) ?? Data()
                })
            else { return nil }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.first?.hasSuffix("/fake-engine") == true, arguments.contains(where: { $0.contains(root.path) }), isAlive(pid) else {
                return nil
            }
            return (pid, arguments)
        }
    }

    /// Names the seed in every failure, so the failing moments can be replayed.
    private var context: String { "[MODELD_KILL_SEED=\(seed)]" }

    /// Polls `condition` every 50 ms until it holds; fails the test (and throws) after `timeout`.
    private func waitFor(_ what: String, timeout: Duration, _ condition: () async throws -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while try await !condition() {
            guard clock.now < deadline else {
                Issue.record("\(context) timed out waiting for \(what)\nmodeld log:\n\(launch.log)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// The entries of a directory (none when it does not exist).
private func children(of directory: URL) -> [URL] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).map { directory.appending(path: $0) }
}

/// Every entry below `directory`, as (relative path, file type), symlinks not followed.
private func entries(under directory: URL, prefix: String = "") -> [(String, FileAttributeType)] {
    children(of: directory).flatMap { url -> [(String, FileAttributeType)] in
        guard let type = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.type] as? FileAttributeType else { return [] }
        let relative = prefix + url.lastPathComponent
        return [(relative, type)] + (type == .typeDirectory ? entries(under: url, prefix: relative + "/") : [])
    }
}

/// The size of a file, 0 when it is missing.
private func fileSize(_ url: URL) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
}

/// `count` bytes from the generator (incompressible, like weights).
private func randomData(_ count: Int, _ random: inout SeededGenerator) -> Data {
    var data = Data(count: count)
    data.withUnsafeMutableBytes { buffer in
        let words = buffer.bindMemory(to: UInt64.self)
        for index in words.indices { words[index] = random.next() }
    }
    return data
}
