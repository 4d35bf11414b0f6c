import Foundation
import Testing

@testable import Launchers

@Suite("Who holds a listening port")
struct ListenerOwnerTests {
    @Test("a port this process listens on is held by its session, not by another; an unused port is unknown")
    func owner() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        // Closed once: the test closes it itself below, and a second close would close whatever descriptor another
        // test running in parallel opened with the same number in between (a database, a pipe).
        var open = true
        defer { if open { close(fd) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        try #require(listening)
        let port = Int(UInt16(bigEndian: address.sin_port))

        #expect(ListenerOwner.listeningInodes(port: port).count == 1)
        #expect(ListenerOwner.isHeld(port: port, bySession: getsid(0)) == true)
        // Session 1 (init's) holds no socket of ours.
        #expect(ListenerOwner.isHeld(port: port, bySession: 1) == false)
        close(fd)
        open = false
        #expect(ListenerOwner.isHeld(port: port, bySession: getsid(0)) == nil)
    }
}
