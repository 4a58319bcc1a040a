import Foundation
import GhostImage
import XCTest

/// Interval timers (setitimer) and POSIX timers (timer_create) across
/// checkpoint, kill -9 and resume (the timers program checks itself).
final class TimerTests: GhostTestCase {
    /// The manifest of checkpoint `n` in `images`.
    func manifest(_ images: String, _ n: Int) throws -> Manifest {
        let store = try ImageStore(path: images, create: false)
        defer { store.close() }
        return try Manifest.decode(try store.loadManifest(n))
    }

    /// setitimer 10 ms SIGALRM, a periodic CLOCK_MONOTONIC timer, a one-shot
    /// to a chosen thread still due at the checkpoint, a SIGEV_NONE timer and
    /// a gap in the IDs: after resume the counters go on, the one-shot fires
    /// in its thread, and the old IDs (not the gap) are valid.
    func testTimersKeepFiringWithTheirIds() throws {
        let exe = try program("timers")
        let dir = try makeTempDir("timers")
        let images = dir + "/images"
        try runCheckpointKill(exe, [], imageDir: images, cwd: dir)

        // The image holds what the program set up, the one-shot still armed.
        let m = try manifest(images, 1)
        let timers = try XCTUnwrap(m.processes.first { $0.zombieStatus == nil }?.timers, "no timers in the image")
        XCTAssertEqual(timers.posix.map(\.id), [0, 2, 3])
        XCTAssertEqual(timers.posix.map(\.value), [0xabc, 0x5150, 0])
        XCTAssertEqual(timers.posix.map(\.notify), [0, 4, 1])   // SIGEV_SIGNAL, SIGEV_THREAD_ID, SIGEV_NONE
        XCTAssertEqual(timers.posix[0].intervalNanos, 20_000_000)
        XCTAssertGreaterThan(timers.posix[1].valueNanos, 0, "the one-shot fired before the checkpoint; the test proves nothing")
        XCTAssertEqual(Set(timers.itimers.map(\.which)), [0, 1])  // ITIMER_REAL, ITIMER_VIRTUAL

        let resumed = try startGhostResume(images, cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        try finishResumed(resumed, timeout: 120)
    }

    /// Checkpointed twice (the second time after a resume): the timers are
    /// still there, with the same IDs.
    func testTimersAfterSecondCheckpoint() throws {
        let exe = try program("timers")
        let dir = try makeTempDir("timers2")
        let images = dir + "/images"
        try runCheckpointKill(exe, [], imageDir: images, cwd: dir)
        let first = try startGhostResume(images, cwd: dir)
        let (_, pid2) = try waitResumed(first, exe: exe)
        try checkpoint(first, number: 2)
        try killNode(first, jobPid: pid2)
        let m = try manifest(images, 2)
        XCTAssertEqual(m.processes.first { $0.zombieStatus == nil }?.timers?.posix.map(\.id), [0, 2, 3])

        let second = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(second, exe: exe)
        XCTAssertEqual(n, 2)
        try finishResumed(second, timeout: 120)
    }

    /// Without namespaces (a single-threaded job gets a new PID): the timers
    /// come back with their IDs, and the one-shot SIGEV_THREAD_ID timer that
    /// targeted the old thread ID now targets the new one.
    func testTimersWithoutNamespaces() throws {
        let exe = try program("timers")
        let dir = try makeTempDir("timers-nons")
        let images = dir + "/images"
        let run = try startGhostRun(exe, ["single"], imageDir: images, ghostArgs: ["--no-namespaces"], cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid)
        let timers = try XCTUnwrap(try manifest(images, 1).processes.first?.timers)
        XCTAssertEqual(timers.posix.map(\.id), [0, 2, 3])
        XCTAssertEqual(timers.posix[1].tid, pid, "the one-shot targets the job's only thread")

        let resumed = try startGhostResume(images, cwd: dir)
        let (_, newPid) = try waitResumed(resumed, exe: exe)
        XCTAssertNotEqual(newPid, pid)
        try finishResumed(resumed, timeout: 120)
    }
}
