import Catalog
import Foundation
import ModelStore

/// A listening socket the daemon owns: from systemd, or bound by us.
struct ListeningSocket: Sendable {
    enum Kind: Sendable { case tcp, unix }
    var fd: Int32
    var kind: Kind
    /// `127.0.0.1:8700` or the socket path, for logs.
    var description: String
    /// The port a TCP socket we bound is bound to (the one the system chose for port 0).
    var port: Int?
    /// Whether it serves Ollama's API alone (`ollama_listen`, or systemd's socket named `ollama`).
    var servesOllama = false

    /// Binds and listens on a TCP address, close-on-exec.
    /// - Throws: ``ListenError`` naming the address and the system's reason.
    static func tcp(_ address: ListenAddress) throws -> ListeningSocket {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &result)
        guard status == 0, let info = result else {
            throw ListenError(address: address.description, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ListenError(address: address.description, reason: String(cString: strerror(errno))) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, listen(fd, 512) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ListenError(address: address.description, reason: reason)
        }
        let port = boundPort(fd) ?? address.port
        return ListeningSocket(fd: fd, kind: .tcp, description: "\(address.host):\(port)", port: port)
    }

    /// Binds and listens on a unix socket with mode 0660, close-on-exec. A stale socket file (nobody
    /// listening) is replaced; a live one means another daemon runs, which is an error.
    static func unix(path: String) throws -> ListeningSocket {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            throw ListenError(address: path, reason: "the path is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path.utf8)
            buffer[path.utf8.count] = 0
        }
        if FileManager.default.fileExists(atPath: path) {
            if isListening(&address) {
                throw ListenError(address: path, reason: "another modeld is already listening there")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ListenError(address: path, reason: String(cString: strerror(errno))) }
        // The socket file takes its mode from the umask at bind time: 0660 from the start, no window.
        let previous = umask(0o117)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(previous)
        guard bound == 0, chmod(path, 0o660) == 0, listen(fd, 512) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ListenError(address: path, reason: reason)
        }
        return ListeningSocket(fd: fd, kind: .unix, description: path)
    }

    /// The name (`FileDescriptorName=`) of the socket systemd passes for Ollama's API.
    static let ollamaSocketName = "ollama"

    /// Wraps a socket systemd passed, after checking what it is.
    static func activated(fd: Int32, name: String) -> ListeningSocket {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let family = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 ? Int32($0.pointee.sa_family) : -1 }
        }
        return ListeningSocket(
            fd: fd, kind: family == AF_UNIX ? .unix : .tcp, description: "systemd socket \"\(name)\" (fd \(fd))",
            servesOllama: name == ollamaSocketName)
    }

    private static func boundPort(_ fd: Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer -> Int? in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int? in
                guard getsockname(fd, address, &length) == 0 else { return nil }
                switch Int32(address.pointee.sa_family) {
                case AF_INET: return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
                case AF_INET6: return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
                default: return nil
                }
            }
        }
    }

    private static func isListening(_ address: inout sockaddr_un) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }
}

/// A socket that could not be set up.
struct ListenError: Error, CustomStringConvertible {
    var address: String
    var reason: String
    var description: String { "cannot listen on \(address): \(reason)" }
}
