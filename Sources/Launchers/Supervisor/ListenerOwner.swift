import Foundation

/// Who holds a listening TCP port, read from `/proc`: an engine answering its readiness probe must be the
/// engine we spawned, not another program that bound the port first (the engine then fails to bind and exits,
/// but a probe in between would have reached the wrong server; docs/design/supervision.md, Health probes).
enum ListenerOwner {
    /// Whether a process of the session `session` (engines run in their own session, led by the pid we
    /// spawned) holds the socket listening on `port`.
    /// - Returns: nil when `/proc` does not show a listener on the port (then the probe's answer stands).
    static func isHeld(port: Int, bySession session: Int32) -> Bool? {
        let inodes = listeningInodes(port: port)
        guard !inodes.isEmpty else { return nil }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for entry in entries {
            guard let pid = Int32(entry), sessionID(of: pid) == session else { continue }
            let fdDirectory = "/proc/\(pid)/fd"
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: fdDirectory)) ?? [] {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDirectory)/\(fd)"),
                    target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast())
                else { continue }
                if inodes.contains(inode) { return true }
            }
        }
        return false
    }

    /// Inodes of the sockets in state LISTEN on `port`, IPv4 and IPv6.
    static func listeningInodes(port: Int) -> Set<UInt64> {
        var inodes = Set<UInt64>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 9, fields[3] == "0A",
                    let portText = fields[1].split(separator: ":").last, Int(portText, radix: 16) == port,
                    let inode = UInt64(fields[9]), inode != 0
                else { continue }
                inodes.insert(inode)
            }
        }
        return inodes
    }

    /// Field 6 of `/proc/<pid>/stat`, the session id.
    private static func sessionID(of pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm) ": state, ppid, pgrp, session.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 3 ? Int32(fields[3]) : nil
    }
}
