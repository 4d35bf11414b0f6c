import Foundation

/// Hands out loopback ports from the configured range, checking that each is free.
package struct PortAllocator: Sendable {
    package var range: ClosedRange<Int>

    package init(range: ClosedRange<Int>) {
        self.range = range
    }

    /// The first port of the range, from `start` on and wrapping, that is not in `taken` and that a
    /// listener can bind on 127.0.0.1.
    /// - Throws: ``LaunchError`` with ``LaunchError/Code/noFreePort`` when every port is busy.
    package func allocate(excluding taken: Set<Int>, startingAt start: Int? = nil) throws -> Int {
        let count = range.count
        let first = start.map { range.contains($0) ? $0 - range.lowerBound : 0 } ?? 0
        for step in 0..<count {
            let port = range.lowerBound + (first + step) % count
            if !taken.contains(port), Self.isFree(port) { return port }
        }
        throw LaunchError(
            code: .noFreePort,
            message: "no free port in \(range.lowerBound)-\(range.upperBound) for the engine: stop a run or widen the configured port range")
    }

    /// Whether a listener could bind `127.0.0.1:port` now (with SO_REUSEADDR, as the engines bind).
    package static func isFree(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var yes: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0
    }
}
