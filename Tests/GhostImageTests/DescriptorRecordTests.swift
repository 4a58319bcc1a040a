import Foundation
import XCTest
@testable import GhostImage

/// Descriptor records: images written before the per-kind records existed
/// still decode, and the new records survive encoding.
final class DescriptorRecordTests: XCTestCase {
    func testOldPipeRecordDecodesWithoutTheNewFields() throws {
        let old = #"{"fd":4,"kind":"pipe","path":"pipe:[77]","flags":0,"cloexec":false,"offset":0,"#
            + #""pipe":{"id":77,"capacity":65536,"dataLength":0}}"#
        let r = try JSONDecoder().decode(FDRecord.self, from: Data(old.utf8))
        XCTAssertEqual(r.kind, .pipe)
        XCTAssertEqual(r.pipe?.id, 77)
        XCTAssertNil(r.socket)
        XCTAssertNil(r.epoll)
        XCTAssertNil(r.timerfd)
    }

    func testNewKindsRoundTrip() throws {
        var r = FDRecord(fd: 5, kind: .unixSocket, path: "socket:[9]", flags: 0o4002, cloexec: true, offset: 0,
                         stdio: nil, identity: nil)
        var s = UnixSocketRecord(id: 9, type: 2, state: .connected)
        s.peer = 10
        s.messages = [1, 100, 2000]
        s.dataLength = 2101
        s.name = [0] + Array("abstract".utf8)
        r.socket = s
        r.epoll = EpollRecord(entries: [.init(fd: 3, events: 0x8000_0001, data: 111)])
        r.timerfd = TimerFDRecord(clockid: 1, remainingNanos: 5, intervalNanos: 250_000_000, ticks: 2)
        let back = try JSONDecoder().decode(FDRecord.self, from: JSONEncoder().encode(r))
        XCTAssertEqual(back.kind, .unixSocket)
        XCTAssertEqual(back.socket?.state, .connected)
        XCTAssertEqual(back.socket?.peer, 10)
        XCTAssertEqual(back.socket?.messages, [1, 100, 2000])
        XCTAssertEqual(back.socket?.name, s.name)
        XCTAssertEqual(back.epoll?.entries.first?.events, 0x8000_0001)
        XCTAssertEqual(back.timerfd?.ticks, 2)
    }
}
