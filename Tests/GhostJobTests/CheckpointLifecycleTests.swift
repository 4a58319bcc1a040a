// Checkpoints over a job's life: several checkpoints, chains of
// resume-checkpoint-resume, named checkpoints, the timer, retention, damaged
// images, a checkpoint interrupted by a node failure, a full disk, and
// ghost-resume's errors.
//
// Most tests drive Tests/programs/counter.c: each "next" line advances its
// 4 MiB state one step and prints "step K value V", so after a resume the
// next step tells which checkpoint came back and whether memory is intact.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class CheckpointLifecycleTests: GhostTestCase {
    /// "step K value V" lines of an uninterrupted counter run, K = 1...steps.
    private func referenceSteps(_ steps: Int) throws -> [String] {
        let exe = try program("counter")
        let input = String(repeating: "next\n", count: steps) + "quit\n"
        let r = try runToCompletion(exe, [], input: input, timeout: 60)
        XCTAssertEqual(r.status, .exited(0), r.stdout + r.stderr)
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map(String.init)
        guard lines.count == steps else { throw HarnessError("reference counter run printed \(lines.count) steps:\n\(r.stdout)") }
        return lines
    }

    /// Sends "next" and expects exactly the reference line for that step.
    private func step(_ ghost: Child, expect ref: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let before = ghost.stdoutText.components(separatedBy: "\n").filter { $0.hasPrefix("step ") }.count
        try ghost.write("next\n")
        let deadline = Date(timeIntervalSinceNow: 60)
        var steps: [String] = []
        repeat {
            steps = ghost.stdoutText.components(separatedBy: "\n").filter { $0.hasPrefix("step ") }
            if steps.count > before { break }
            if !ghost.isRunning || Date() > deadline {
                throw HarnessError("no step line after 'next'\n\(ghost.transcript)")
            }
            usleep(10_000)
        } while true
        XCTAssertEqual(steps[before], ref, "the job is not at the expected step/state\n\(ghost.transcript)", file: file, line: line)
    }

    private func quit(_ ghost: Child, expect ref: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try ghost.write("quit\n")
        let okLine = try ghost.waitFor("ok final", timeout: 60)
        XCTAssertEqual(okLine, "ok final " + ref, file: file, line: line)
        try expectExit(ghost, .exited(0), file: file, line: line)
    }

    // MARK: Chains

    /// Two checkpoints, kill, resume (newest = 2), checkpoint again from
    /// ghost-resume (3), kill, resume that one: each resume continues
    /// exactly where its checkpoint was, as an uninterrupted run does.
    func testCheckpointTwiceResumeAndChain() throws {
        let ref = try referenceSteps(3)
        let exe = try program("counter")
        let dir = try makeTempDir("chain")
        let images = dir + "/images"

        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)            // at step 0
        try step(run, expect: ref[0])
        try checkpoint(run, number: 2)            // at step 1
        try killNode(run, jobPid: pid)
        XCTAssertEqual(checkpointFiles(images).map(\.number), [1, 2])

        let r1 = try startGhostResume(images, cwd: dir)
        let (n1, pid1) = try waitResumed(r1, exe: exe)
        XCTAssertEqual(n1, 2, "ghost-resume did not pick the newest checkpoint\n\(r1.transcript)")
        try step(r1, expect: ref[1])
        try checkpoint(r1, number: 3)             // at step 2, taken by ghost-resume
        try killNode(r1, jobPid: pid1)

        let r2 = try startGhostResume(images, cwd: dir)
        let (n2, _) = try waitResumed(r2, exe: exe)
        XCTAssertEqual(n2, 3, r2.transcript)
        try step(r2, expect: ref[2])
        try quit(r2, expect: ref[2])
    }

    /// --checkpoint N resumes that checkpoint, not the newest.
    func testResumeNamedCheckpoint() throws {
        let ref = try referenceSteps(3)
        let exe = try program("counter")
        let dir = try makeTempDir("named")
        let images = dir + "/images"

        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)   // step 0
        try step(run, expect: ref[0])
        try checkpoint(run, number: 2)   // step 1
        try step(run, expect: ref[1])
        try checkpoint(run, number: 3)   // step 2
        try run.write("quit\n")
        try expectExit(run, .exited(0))

        for (n, nextRef) in [(1, ref[0]), (2, ref[1]), (3, ref[2])] {
            let r = try startGhostResume(images, ["--checkpoint", "\(n)"], cwd: dir)
            let (got, _) = try waitResumed(r, exe: exe)
            XCTAssertEqual(got, n, r.transcript)
            try step(r, expect: nextRef)
            try quit(r, expect: nextRef)
        }
    }

    /// --checkpoint-interval 1s takes checkpoints on its own; the newest resumes.
    func testCheckpointInterval() throws {
        let ref = try referenceSteps(2)
        let exe = try program("counter")
        let dir = try makeTempDir("interval")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, ghostArgs: ["--checkpoint-interval", "1s"], cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        try step(run, expect: ref[0])
        try waitCheckpoint(run, number: 1, timeout: 60)
        try waitCheckpoint(run, number: 2, timeout: 60)
        try waitCheckpoint(run, number: 3, timeout: 60)
        try killNode(run, jobPid: pid)

        let r = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(r, exe: exe)
        XCTAssertGreaterThanOrEqual(n, 3, r.transcript)
        try step(r, expect: ref[1])
        try quit(r, expect: ref[1])
    }

    /// --keep 2: after four checkpoints only the newest two remain; asking
    /// for a pruned one is a clear error listing what is available.
    func testKeepRetention() throws {
        let ref = try referenceSteps(4)
        let exe = try program("counter")
        let dir = try makeTempDir("keep")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, ghostArgs: ["--keep", "2"], cwd: dir)
        try run.waitFor("ready")
        for n in 1...4 {
            try checkpoint(run, number: n)
            try step(run, expect: ref[n - 1])
        }
        try run.write("quit\n")
        try expectExit(run, .exited(0))
        XCTAssertEqual(checkpointFiles(images).map(\.number), [3, 4], "--keep 2 left other checkpoints")

        let r = try runToCompletion(Paths.ghostResume, ["--checkpoint", "1", images], timeout: 60)
        XCTAssertNotEqual(r.status, .exited(0))
        XCTAssertTrue(r.stderr.contains("ghost-resume: error: "), r.stderr)
        XCTAssertTrue(r.stderr.contains("3") && r.stderr.contains("4"), "the error does not list checkpoints 3 and 4: \(r.stderr)")

        let resumed = try startGhostResume(images, ["--checkpoint", "3"], cwd: dir)
        let (n, _) = try waitResumed(resumed, exe: exe)
        XCTAssertEqual(n, 3)
        try step(resumed, expect: ref[2])   // checkpoint 3 was taken at step 2
        try quit(resumed, expect: ref[2])
    }

    // MARK: Descriptors inherited from the launcher

    /// ghost-run and ghost-resume are started with extra descriptors that
    /// are not the job's own doing (a socket at fd 5, a pipe at fd 250, as a
    /// batch system may leak): checkpoints work before the resume, and
    /// ghost-resume's own checkpoints work after it, down a chain.
    func testInheritedDescriptorsDoNotBreakCheckpointsAfterResume() throws {
        let ref = try referenceSteps(2)
        let exe = try program("counter")
        let dir = try makeTempDir("inherit")
        let images = dir + "/images"

        func leaked() throws -> [Int32: Int32] {
            var sv: [Int32] = [0, 0], p: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0, pipe(&p) == 0 else {
                throw HarnessError("socketpair/pipe: \(String(cString: strerror(errno)))")
            }
            cleanups.append { sv.forEach { close($0) }; p.forEach { close($0) } }
            return [5: sv[0], 250: p[1]]
        }

        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir, inherit: try leaked())
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)            // step 0
        try killNode(run, jobPid: pid)

        let r1 = try startGhostResume(images, cwd: dir, inherit: try leaked())
        let (n1, pid1) = try waitResumed(r1, exe: exe)
        XCTAssertEqual(n1, 1)
        try step(r1, expect: ref[0])
        try checkpoint(r1, number: 2)             // step 1, taken by ghost-resume
        try killNode(r1, jobPid: pid1)

        let r2 = try startGhostResume(images, cwd: dir, inherit: try leaked())
        let (n2, _) = try waitResumed(r2, exe: exe)
        XCTAssertEqual(n2, 2)
        try step(r2, expect: ref[1])
        try quit(r2, expect: ref[1])
    }

    /// A job that lowers its RLIMIT_NOFILE soft limit to 200 while holding an
    /// inherited descriptor numbered above it (fd 250) still resumes.
    func testLoweredFileLimitWithHighInheritedDescriptor() throws {
        let dir = try makeTempDir("nofile")
        var p: [Int32] = [0, 0]
        guard pipe(&p) == 0 else { throw HarnessError("pipe") }
        cleanups.append { p.forEach { close($0) } }
        try checkpointKillResume("proc_attrs", [dir], inherit: [250: p[1]])
    }

    // MARK: Damaged and missing images

    /// Damaging the newest checkpoint file makes ghost-resume warn and fall
    /// back to the previous one; damaging all makes it fail naming the file.
    func testDamagedCheckpointFallsBackThenFails() throws {
        let ref = try referenceSteps(1)
        let exe = try program("counter")
        let dir = try makeTempDir("damaged")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)   // step 0
        try step(run, expect: ref[0])
        try checkpoint(run, number: 2)   // step 1
        try killNode(run, jobPid: pid)

        let files = checkpointFiles(images)
        guard files.map(\.number) == [1, 2] else {
            throw HarnessError("expected checkpoints/000001.ckpt and 000002.ckpt in \(images), found \(files)")
        }
        try damageFile(files[1].path)

        let r = try startGhostResume(images, cwd: dir)
        let (n, rpid) = try waitResumed(r, exe: exe)
        XCTAssertEqual(n, 1, "did not fall back to checkpoint 1\n\(r.transcript)")
        let warnings = r.stderrText.split(separator: "\n").filter { $0.hasPrefix("ghost: warning") }
        XCTAssertTrue(warnings.contains { $0.contains("000002") || $0.contains("checkpoint 2") },
                      "no warning about the damaged checkpoint 2\n\(r.transcript)")
        try step(r, expect: ref[0])
        try killNode(r, jobPid: rpid)   // (a job that ended would be reported as such, not resumed)

        try damageFile(files[0].path)
        let bad = try runToCompletion(Paths.ghostResume, [images], timeout: 60)
        XCTAssertNotEqual(bad.status, .exited(0), "resumed from damaged checkpoints: \(bad.stderr)")
        if case .signaled = bad.status { XCTFail("ghost-resume crashed: \(bad.status)\n\(bad.stderr)") }
        XCTAssertTrue(bad.stderr.contains("ghost-resume: error: "), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("000002.ckpt") || bad.stderr.contains("000001.ckpt"),
                      "the error does not name a damaged file: \(bad.stderr)")
    }

    /// ghost-resume on a directory that does not exist, on an empty one,
    /// on one that is not an image, and with a checkpoint number that does
    /// not exist: a one-line error, non-zero exit, no crash.
    func testResumeErrors() throws {
        let dir = try makeTempDir("resumeerr")

        func expectError(_ args: [String], mentions: [String], _ what: String) throws {
            let r = try runToCompletion(Paths.ghostResume, args, cwd: dir, timeout: 60)
            XCTAssertNotEqual(r.status, .exited(0), "\(what): ghost-resume succeeded\n\(r.stderr)")
            if case .signaled = r.status { XCTFail("\(what): ghost-resume crashed: \(r.status)\n\(r.stderr)") }
            XCTAssertTrue(r.stderr.hasPrefix("ghost-resume: error: ") || r.stderr.contains("\nghost-resume: error: "),
                          "\(what): no 'ghost-resume: error: ' line: \(r.stderr)")
            for m in mentions {
                XCTAssertTrue(r.stderr.contains(m), "\(what): the error does not mention '\(m)': \(r.stderr)")
            }
        }

        try expectError([dir + "/does-not-exist"], mentions: ["does-not-exist"], "nonexistent directory")
        let empty = dir + "/empty"
        mkdir(empty, 0o700)
        try expectError([empty], mentions: ["empty"], "empty directory")
        let junk = dir + "/junk"
        mkdir(junk, 0o700)
        _ = FileManager.default.createFile(atPath: junk + "/some-file", contents: Data("x".utf8))
        try expectError([junk], mentions: ["junk"], "directory that is not an image")

        // A real image with checkpoints 1 and 2, then --checkpoint 99.
        let exe = try program("counter")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)
        try checkpoint(run, number: 2)
        try run.write("quit\n")
        try expectExit(run, .exited(0))
        try expectError(["--checkpoint", "99", images], mentions: ["99"], "--checkpoint 99")
        let r = try runToCompletion(Paths.ghostResume, ["--checkpoint", "99", images], cwd: dir, timeout: 60)
        let numbers = Set(r.stderr.replacingOccurrences(of: images, with: "")
            .split(whereSeparator: { !$0.isNumber }).map(String.init))
        XCTAssertTrue(numbers.isSuperset(of: ["1", "2"]), "the error does not list the available checkpoints 1 and 2: \(r.stderr)")
    }

    // MARK: Failures during a checkpoint

    /// ghost-run is SIGKILLed while it writes the checkpoint of a 1.5 GiB job:
    /// the previous checkpoint is still whole and resumes.
    func testKillDuringLargeCheckpointKeepsPrevious() throws {
        let exe = try program("bigmem")
        let dir = try makeTempDir("killckpt")
        let images = dir + "/images"
        let run = try startGhostRun(exe, ["16", "1536"], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready small")
        try checkpoint(run, number: 1)
        let sizeAfterFirst = directorySize(images)
        try run.write("grow\n")
        try run.waitFor("ready big", timeout: 120)

        run.signal(SIGUSR1)
        // Kill as soon as the second checkpoint has written a few MiB.
        let deadline = Date(timeIntervalSinceNow: 120)
        var interrupted = false
        while Date() < deadline {
            if run.stderrText.contains("ghost: checkpoint 2 ") { break }   // done or failed: too late
            if directorySize(images) > sizeAfterFirst + 8 << 20 { interrupted = true; break }
            usleep(5_000)
        }
        try killNode(run, jobPid: pid)
        XCTAssertTrue(interrupted, "could not catch checkpoint 2 in progress\n\(run.transcript)")

        let r = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(r, exe: exe)
        XCTAssertEqual(n, 1, "resumed \(n), expected the previous checkpoint 1\n\(r.transcript)")
        try r.write("check\n")
        try r.waitFor("ok small")
        try expectExit(r, .exited(0))
    }

    /// The image directory is on a full (8 MiB tmpfs) file system: the second,
    /// larger checkpoint fails with "checkpoint 2 failed", the job keeps
    /// running and finishes, and checkpoint 1 still resumes.
    func testFullDiskCheckpointFailsJobContinues() throws {
        guard GhostTestCase.isRoot else {
            throw XCTSkip("needs root to mount a small tmpfs (mount -t tmpfs -o size=8m); not root here")
        }
        let exe = try program("bigmem")
        let dir = try makeTempDir("fulldisk")
        let mnt = dir + "/small"
        mkdir(mnt, 0o700)
        let m = try runToCompletion("/bin/mount", ["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt], timeout: 60)
        guard m.status == .exited(0) else {
            throw XCTSkip("cannot mount a tmpfs here even as root (\(m.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        cleanups.append { _ = try? runToCompletion("/bin/umount", ["-l", mnt], timeout: 60) }
        let images = mnt + "/images"

        let run = try startGhostRun(exe, ["1", "32"], imageDir: images, cwd: dir)
        try run.waitFor("ready small")
        try checkpoint(run, number: 1)
        try run.write("grow\n")
        try run.waitFor("ready big", timeout: 60)
        run.signal(SIGUSR1)
        let (i, line) = try run.waitFor(anyOf: ["ghost: checkpoint 2 failed", "ghost: checkpoint 2 done"], in: .stderr, timeout: 120)
        XCTAssertEqual(i, 0, "checkpoint 2 of 33 MiB of random data fit in 8 MiB? \(line)")
        XCTAssertTrue(run.isRunning, "ghost-run stopped after the failed checkpoint\n\(run.transcript)")
        try run.write("go\n")
        try run.waitFor("ok big", timeout: 60)
        try expectExit(run, .exited(0))

        // The failed checkpoint left nothing; checkpoint 1 is whole (named:
        // the job ended, so the newest would not be resumed unasked).
        XCTAssertEqual(checkpointFiles(images).map(\.number), [1])
        let r = try startGhostResume(images, ["--checkpoint", "1"], cwd: dir)
        let (n, _) = try waitResumed(r, exe: exe)
        XCTAssertEqual(n, 1, r.transcript)
        try r.write("check\n")
        try r.waitFor("ok small")
        try expectExit(r, .exited(0))
    }
}
