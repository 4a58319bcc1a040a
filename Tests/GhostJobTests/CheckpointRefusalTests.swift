import Foundation
import GhostImage
import XCTest

/// What a checkpoint cannot take: a clear error naming the process (and
/// descriptor), the job keeps running, and the previous checkpoint stays
/// intact and resumable.
final class CheckpointRefusalTests: GhostTestCase {
    /// Checkpoint 1 is taken; then the job holds something ghost refuses
    /// (`provoke` written to its stdin, answered by `provokedText`); checkpoint
    /// 2 must fail with a message containing all of `expect(job pid)`; the job
    /// still answers; checkpoint 1 is intact, and after kill -9 it resumes
    /// and finishes.
    private func refusedThenResumed(_ name: String, provoke: String, provokedText: String,
                                    expect: (pid_t, String) -> [String]) throws {
        let exe = try program(name)
        let dir = try makeTempDir(name)
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try run.write(provoke + "\n")
        let provoked = try run.waitFor(provokedText, in: .stdout, timeout: 60)

        run.signal(SIGUSR1)
        let (i, line) = try run.waitFor(anyOf: ["ghost: checkpoint 2 failed", "ghost: checkpoint 2 done"], in: .stderr, timeout: 120)
        XCTAssertEqual(i, 0, "the checkpoint did not fail: \(line)")
        for part in expect(pid, provoked) {
            XCTAssertTrue(line.contains(part), "'\(part)' missing from: \(line)")
        }
        // The job runs on, and checkpoint 1 is whole.
        try run.write("still\n")
        try run.waitFor(anyOf: ["still running", "closed"], in: .stdout, timeout: 60)
        XCTAssertTrue(run.isRunning, run.transcript)
        XCTAssertEqual(checkpointFiles(images).map(\.number), [1])
        let store = try ImageStore(path: images, create: false)
        XCTAssertEqual(store.verify(1), [], "checkpoint 1 is damaged")
        store.close()
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(resumed, exe: exe)
        XCTAssertEqual(n, 1)
        try finishResumed(resumed, timeout: 60)
    }

    /// A process of the job traced by another (here its parent, as a debugger
    /// or strace would): the message names the traced process and its tracer.
    func testProcessTracedByAnotherTracerIsRefused() throws {
        try refusedThenResumed("traced_child", provoke: "trace", provokedText: "tracing ") { pid, _ in
            let child = ProcInfo.descendants(of: pid).first.map { "process \($0) " } ?? "process "
            return [child, "is traced by process \(pid) (traced_child", "detach"]
        }
    }

    /// A descriptor on /dev/ptmx (a pty master): ghost reopens /dev/null,
    /// /dev/urandom (held since the start, so checkpoint 1 had them) but not
    /// that; the message names the process, the descriptor and the device.
    func testDeviceGhostCannotReopenIsRefused() throws {
        try refusedThenResumed("device_fd", provoke: "ptmx", provokedText: "holding ptmx fd ") { pid, line in
            let fd = line.split(separator: " ").last.map(String.init) ?? "?"
            return ["fd \(fd) of process \(pid) (device_fd)", "/dev/ptmx", "close it"]
        }
    }
}
