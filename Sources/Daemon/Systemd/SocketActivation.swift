import CSystemd
import Foundation

/// Sockets handed over by systemd (`sd_listen_fds_with_names`), by their `FileDescriptorName=`
/// (docs/design/systemd.md, Socket activation).
struct ActivatedSockets {
    /// Name → file descriptor, e.g. `["http": 3, "control": 4]`.
    var byName: [String: Int32]

    /// Takes the sockets systemd passed, if any, and removes `LISTEN_*` from the environment so no child
    /// inherits them. Each fd gets FD_CLOEXEC at once: they arrive without it and would otherwise leak into
    /// every engine we spawn.
    static func take() -> ActivatedSockets {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return ActivatedSockets(byName: [:]) }
        var byName: [String: Int32] = [:]
        for index in 0..<Int(count) {
            let fd = SD_LISTEN_FDS_START + Int32(index)
            let flags = fcntl(fd, F_GETFD)
            _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            // Two sockets with the same name: keep the first; an unnamed extra is still closed-on-exec.
            if byName[name] == nil { byName[name] = fd }
        }
        if let names {
            for index in 0..<Int(count) { free(names[index]) }
            free(names)
        }
        return ActivatedSockets(byName: byName)
    }
}
