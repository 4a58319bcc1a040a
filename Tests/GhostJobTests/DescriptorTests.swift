import Foundation
import XCTest

/// Kinds of descriptors beyond files and pipes, shared between the job's
/// processes: unix sockets, FIFOs, eventfd, timerfd, signalfd, epoll. Each
/// program checks itself after kill -9 and resume; sockets ghost cannot
/// checkpoint make the checkpoint fail cleanly.
final class DescriptorTests: GhostTestCase {
    /// Stream, datagram and seqpacket socketpairs between parent and child
    /// with data queued both ways, a connection accepted from a path
    /// listener, a shut-down stream, options the job set: after resume every
    /// byte comes back once, datagram boundaries kept, and the path and
    /// abstract listeners accept new connections.
    func testUnixSocketsBetweenProcesses() throws {
        let okLine = try checkpointKillResume("unix_sockets")
        XCTAssertTrue(okLine.contains("listeners intact"), okLine)
    }
}

extension DescriptorTests {
    /// A FIFO with unread bytes, eventfds (semaphore, 64-bit counter),
    /// timerfds (periodic, expired and unread, never armed), a signalfd with
    /// a pending signal, and an epoll whose entries belong to two processes
    /// (edge-triggered, a fired one-shot): the program finds each as it was,
    /// the epoll's fdinfo lists the same entries and it reports the same
    /// ready set; the child can still EPOLL_CTL_MOD the entry it added.
    func testFifoEventfdTimerfdSignalfdEpoll() throws {
        let okLine = try checkpointKillResume("fd_kinds")
        XCTAssertTrue(okLine.contains("epoll intact"), okLine)
    }

    /// A TCP connection opened after checkpoint 1: checkpoint 2 fails with a
    /// message naming the process, the descriptor and the connection; the
    /// job keeps running and finishes; checkpoint 1 still resumes.
    func testTCPConnectionFailsCheckpointAndKeepsThePreviousOne() throws {
        let exe = try program("sock_outside")
        let dir = try makeTempDir("tcp")
        let images = dir + "/images"
        let run = try startGhostRun(exe, ["tcp"], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try run.write("go\n")
        try run.waitFor("ready2", in: .stdout, timeout: 60)
        run.signal(SIGUSR1)
        let (i, line) = try run.waitFor(anyOf: ["ghost: checkpoint 2 done", "ghost: checkpoint 2 failed"], in: .stderr, timeout: 120)
        XCTAssertEqual(i, 1, "checkpoint 2 should fail: \(run.transcript)")
        XCTAssertTrue(line.contains("TCP connection from 127.0.0.1:") && line.contains("to 127.0.0.1:"), line)
        XCTAssertTrue(line.contains("fd ") && line.contains("of process "), line)
        XCTAssertTrue(ProcInfo.isAlive(pid), "the job died with the failed checkpoint\n\(run.transcript)")
        try run.write("go\n")
        try run.waitFor("ok socket still works", in: .stdout, timeout: 60)
        try expectExit(run, .exited(0))

        let resumed = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(resumed, exe: exe)
        XCTAssertEqual(n, 1)
        try resumed.write("go\n")
        try resumed.waitFor("ready2", in: .stdout, timeout: 60)
        try resumed.write("go\n")
        try resumed.waitFor("ok socket still works", in: .stdout, timeout: 60)
        try expectExit(resumed, .exited(0))
    }

    /// A unix connection to a listener outside the job: the checkpoint fails
    /// naming the peer as outside the job, and the job keeps running.
    func testUnixPeerOutsideTheJobFailsCheckpoint() throws {
        let exe = try program("sock_outside")
        let dir = try makeTempDir("uout")
        let path = dir + "/outside.sock"
        let listener = track(try Child(exe, ["listen", path], cwd: dir))
        try listener.waitFor("listening", in: .stdout, timeout: 60)
        let run = try startGhostRun(exe, ["unix", path], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try run.write("go\n")
        try run.waitFor("ready2", in: .stdout, timeout: 60)
        run.signal(SIGUSR1)
        let (i, line) = try run.waitFor(anyOf: ["ghost: checkpoint 1 done", "ghost: checkpoint 1 failed"], in: .stderr, timeout: 120)
        XCTAssertEqual(i, 1, "the checkpoint should fail: \(run.transcript)")
        XCTAssertTrue(line.contains("unix stream socket") && line.contains("outside the job") && line.contains(path), line)
        try run.write("go\n")
        try run.waitFor("ok socket still works", in: .stdout, timeout: 60)
        try expectExit(run, .exited(0))
        try listener.waitFor("ok listener done", in: .stdout, timeout: 60)
    }
}
