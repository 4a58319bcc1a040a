// ghost-run as a launcher: stdio/env/cwd pass-through, exit statuses,
// forwarded signals, default image directory, bad command lines, and jobs
// that cannot be checkpointed yet (they must keep running).

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class SupervisionTests: GhostTestCase {
    // MARK: Pass-through

    /// The job gets ghost-run's stdin, stdout, stderr, environment and cwd.
    func testStdioEnvironmentAndCwdPassThrough() throws {
        let dir = try makeTempDir("passthrough")
        let script = "read line; echo \"in=$line env=$GHOST_TEST_VAR cwd=$(pwd)\"; echo to-stderr >&2; exit 0"
        let run = try startGhostRun("/bin/sh", ["-c", script], imageDir: dir + "/images", cwd: dir,
                                    env: environment(["GHOST_TEST_VAR": "value 42"]))
        try run.write("hello from stdin\n")
        try expectExit(run, .exited(0), timeout: 60)
        let real = (dir as NSString).resolvingSymlinksInPath
        XCTAssertTrue(run.stdoutText.contains("in=hello from stdin env=value 42 cwd=\(real)"), run.transcript)
        XCTAssertTrue(run.stderrText.contains("to-stderr"), run.transcript)
        XCTAssertTrue(run.stderrText.contains("ghost: started pid "), "missing the 'ghost: started pid' line\n\(run.transcript)")
        for line in run.stderrText.split(separator: "\n") where line != "to-stderr" {
            XCTAssertTrue(line.hasPrefix("ghost: "), "ghost's own stderr line without the 'ghost: ' prefix: '\(line)'")
        }
    }

    // MARK: Exit statuses

    /// The job's exit status is ghost-run's.
    func testExitStatusPropagates() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("exit")
        for code in [0, 3, 77] {
            let run = try startGhostRun(exe, ["exit", "\(code)"], imageDir: dir + "/images-\(code)", cwd: dir)
            try run.waitFor("ready")
            try run.write("go\n")
            try expectExit(run, .exited(Int32(code)))
        }
    }

    /// A job killed by signal N makes ghost-run exit 128+N.
    func testJobKilledBySignalGives128PlusN() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("killed")
        for sig in [SIGTERM, SIGKILL, SIGUSR2] {
            let run = try startGhostRun(exe, ["raise", "\(sig)"], imageDir: dir + "/images-\(sig)", cwd: dir)
            try run.waitFor("ready")
            try run.write("go\n")
            try expectExit(run, .exited(128 + sig))
        }
    }

    /// SIGTERM, SIGINT and SIGHUP sent to ghost-run reach the job (which dies
    /// of them: 128+N), and the job is gone afterwards.
    func testTerminatingSignalsAreForwarded() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("forward")
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            let run = try startGhostRun(exe, ["wait"], imageDir: dir + "/images-\(sig)", cwd: dir)
            let pid = try jobPid(of: run, exe: exe)
            try run.waitFor("ready")
            run.signal(sig)
            try expectExit(run, .exited(128 + sig), timeout: 120)
            try waitGone(pid, what: "job after signal \(sig)")
        }
    }

    /// SIGTERM to ghost-run is delivered to the job's own handler (which
    /// prints and exits 7), not just acted on by ghost-run.
    func testSIGTERMReachesJobHandler() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("trap")
        let run = try startGhostRun(exe, ["trap"], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready")
        run.signal(SIGTERM)
        try expectExit(run, .exited(7), timeout: 120)
        XCTAssertTrue(run.stdoutText.contains("got SIGTERM"), run.transcript)
    }

    /// A job that exits right away under ghost-run, with no checkpoint ever taken.
    func testShortJobWithoutCheckpoint() throws {
        let dir = try makeTempDir("short")
        let run = try startGhostRun("/bin/true", [], imageDir: dir + "/images", cwd: dir)
        try expectExit(run, .exited(0), timeout: 60)
        let fail = try startGhostRun("/bin/false", [], imageDir: dir + "/images2", cwd: dir)
        try expectExit(fail, .exited(1), timeout: 60)
    }

    // MARK: ghost-resume supervises like ghost-run

    /// After a resume, the job's exit status is ghost-resume's; a job killed
    /// by a signal gives 128+N; SIGTERM to ghost-resume reaches the job's handler.
    func testResumedJobExitStatusAndForwarding() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("resume-exit")
        for (args, expected, release) in [(["exit", "3"], ExitStatus.exited(3), "line"),
                                          (["raise", "\(SIGTERM)"], .exited(128 + SIGTERM), "line"),
                                          (["trap"], .exited(7), "sigterm")] {
            let images = dir + "/images-" + args.joined(separator: "-")
            let run = try startGhostRun(exe, args, imageDir: images, cwd: dir)
            let pid = try jobPid(of: run, exe: exe)
            try run.waitFor("ready")
            try checkpoint(run, number: 1)
            try killNode(run, jobPid: pid)
            let resumed = try startGhostResume(images, cwd: dir)
            _ = try waitResumed(resumed, exe: exe)
            if release == "line" { try resumed.write("go\n") } else { resumed.signal(SIGTERM) }
            try expectExit(resumed, expected)
            if release == "sigterm" {
                XCTAssertTrue(resumed.stdoutText.contains("got SIGTERM"), resumed.transcript)
            }
        }
    }

    /// A job that exited by itself after a checkpoint is recorded as ended:
    /// ghost-resume and a requeued `ghost-run --resume-if-present` say so and
    /// give its exit status without running its end again; --list shows it;
    /// naming the checkpoint resumes it anyway (and it ends again).
    func testEndedJobIsNotRunAgain() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("ended")
        let images = dir + "/images"
        let run = try startGhostRun(exe, ["exit", "3"], imageDir: images, cwd: dir)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)
        try run.write("go\n")
        try expectExit(run, .exited(3))

        let resume = try startGhostResume(images, cwd: dir)
        try expectExit(resume, .exited(3))
        XCTAssertTrue(resume.stderrText.contains("already ended (exit status 3"), resume.transcript)
        XCTAssertTrue(resume.stderrText.contains("ghost-resume --checkpoint 1 "), resume.transcript)
        XCTAssertFalse(resume.stderrText.contains("resumed checkpoint"), resume.transcript)

        let again = try startGhostRun(exe, ["exit", "3"], imageDir: images, ghostArgs: ["--resume-if-present"], cwd: dir)
        try expectExit(again, .exited(3))
        XCTAssertTrue(again.stderrText.contains("not running it again"), again.transcript)
        XCTAssertFalse(again.stdoutText.contains("ready"), again.transcript)

        let plain = try startGhostRun(exe, ["exit", "3"], imageDir: images, cwd: dir)
        try expectExit(plain, .exited(125))
        XCTAssertTrue(plain.stderrText.contains("holds a job that ended"), plain.transcript)

        let list = try runToCompletion(Paths.ghostResume, ["--list", images], environment: environment(), timeout: 60)
        XCTAssertTrue(list.stdout.contains("job ended: exit status 3"), list.stdout)

        let forced = try startGhostResume(images, ["--checkpoint", "1"], cwd: dir)
        _ = try waitResumed(forced, exe: exe)
        try forced.write("go\n")
        try expectExit(forced, .exited(3))
    }

    /// The job's own kill(0, sig) reaches ghost too (same process group):
    /// ghost does not pass it on a second time, and a job that did
    /// `kill -TERM 0` and then exited by itself is recorded as ended.
    func testJobsOwnGroupSignalIsNotForwardedAgain() throws {
        let dir = try makeTempDir("kill0")
        let script = "n=0; trap 'n=$((n+1))' USR2; trap '' TERM; kill -USR2 0; sleep 1; kill -TERM 0; sleep 1; echo got=$n"
        let run = try startGhostRun("/bin/sh", ["-c", script], imageDir: dir + "/images", cwd: dir)
        try expectExit(run, .exited(0))
        XCTAssertTrue(run.stdoutText.contains("got=1"), run.transcript)
        XCTAssertNotNil(fileSize(dir + "/images/ENDED"), "a job that exited by itself was not recorded as ended\n\(run.transcript)")
    }

    /// Signals ignored by whoever started ghost-run (`nohup`) stay ignored:
    /// the job starts with them ignored, and ghost does not pass them on.
    func testSignalsIgnoredByTheCallerStayIgnored() throws {
        let dir = try makeTempDir("nohup")
        let run = try startGhostRun("/bin/sh", ["-c", "sleep 1; grep SigIgn /proc/self/status; echo survived"],
                                    imageDir: dir + "/images", cwd: dir, wrapper: ["/usr/bin/nohup"])
        try run.waitFor("ghost: started pid", in: .stderr, timeout: 60)
        kill(run.pid, SIGHUP)
        try expectExit(run, .exited(0))
        XCTAssertTrue(run.stdoutText.contains("survived"), run.transcript)
        // SIGHUP is bit 0 of the mask grep prints (the job's own ignored set).
        let line = run.stdoutText.split(separator: "\n").first { $0.hasPrefix("SigIgn:") } ?? ""
        let mask = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
        XCTAssertEqual(mask & 1, 1, "SIGHUP is not ignored in the job: \(line)\n\(run.transcript)")
    }

    /// Not recorded as ended, so resumed: a job that exited on a SIGTERM
    /// sent to ghost (a scheduler stopping it), and one killed by SIGKILL
    /// from outside (the OOM killer).
    func testJobStoppedFromOutsideIsNotEnded() throws {
        let exe = try program("exit_status")
        let dir = try makeTempDir("not-ended")
        for (args, stop, expected) in [(["trap"], "ghost-sigterm", ExitStatus.exited(7)),
                                       (["wait"], "job-sigkill", .exited(128 + SIGKILL))] {
            let images = dir + "/images-" + stop
            let run = try startGhostRun(exe, args, imageDir: images, cwd: dir)
            let pid = try jobPid(of: run, exe: exe)
            try run.waitFor("ready")
            try checkpoint(run, number: 1)
            if stop == "ghost-sigterm" { run.signal(SIGTERM) } else { kill(pid, SIGKILL) }
            try expectExit(run, expected)
            XCTAssertNil(fileSize(images + "/ENDED"), "\(stop): recorded as ended\n\(run.transcript)")
            let resumed = try startGhostResume(images, cwd: dir)
            let (n, newPid) = try waitResumed(resumed, exe: exe)
            XCTAssertEqual(n, 1)
            kill(newPid, SIGKILL)
            try expectExit(resumed, .exited(128 + SIGKILL))
        }
    }

    /// ghost-resume --checkpoint-interval 1s checkpoints the resumed job on its own.
    func testResumeWithCheckpointInterval() throws {
        let exe = try program("counter")
        let dir = try makeTempDir("resume-interval")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(images, ["--checkpoint-interval", "1s"], cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        try waitCheckpoint(resumed, number: 2, timeout: 60)
        try waitCheckpoint(resumed, number: 3, timeout: 60)
        try resumed.write("quit\n")
        try resumed.waitFor("ok final step 0 ")
        try expectExit(resumed, .exited(0))
    }

    // MARK: Image directory

    /// Without --image-dir: ./ghost-images/<program basename>, or
    /// ./ghost-images/$SLURM_JOB_ID under Slurm.
    func testDefaultImageDirectory() throws {
        let exe = try program("counter")
        let dir = try makeTempDir("defaultdir")
        for (env, expected) in [(environment(), "ghost-images/counter"),
                                (environment(["SLURM_JOB_ID": "4242"], removing: []), "ghost-images/4242")] {
            let run = try startGhostRun(exe, [], imageDir: nil, cwd: dir, env: env)
            try run.waitFor("ready")
            try checkpoint(run, number: 1)
            let files = checkpointFiles(dir + "/" + expected)
            XCTAssertEqual(files.map(\.number), [1], "no checkpoint 1 in \(dir)/\(expected)\n\(run.transcript)")
            try run.write("quit\n")
            try expectExit(run, .exited(0))
        }
    }

    // MARK: Bad command lines

    func testUnknownOptionIsRejected() throws {
        let r = try runToCompletion(Paths.ghostRun, ["--no-such-option", "--", "/bin/true"], timeout: 60)
        XCTAssertNotEqual(r.status, .exited(0), "ghost-run accepted --no-such-option")
        if case .signaled = r.status { XCTFail("ghost-run crashed: \(r.status)\n\(r.stderr)") }
        XCTAssertTrue(r.stderr.contains("no-such-option"), "the message does not name the option: \(r.stderr)")
        let r2 = try runToCompletion(Paths.ghostResume, ["--no-such-option", "/tmp"], timeout: 60)
        XCTAssertNotEqual(r2.status, .exited(0), "ghost-resume accepted --no-such-option")
        XCTAssertTrue(r2.stderr.contains("no-such-option"), "the message does not name the option: \(r2.stderr)")
    }

    func testBadCheckpointIntervalIsRejected() throws {
        let dir = try makeTempDir("badinterval")
        for bad in ["abc", "10x", "-5s", ""] {
            let r = try runToCompletion(Paths.ghostRun, ["--image-dir", dir + "/i", "--checkpoint-interval", bad, "--", "/bin/true"],
                                        cwd: dir, timeout: 60)
            XCTAssertNotEqual(r.status, .exited(0), "ghost-run accepted --checkpoint-interval '\(bad)'")
            if case .signaled = r.status { XCTFail("ghost-run crashed on '\(bad)': \(r.status)\n\(r.stderr)") }
            XCTAssertFalse(r.stderr.isEmpty, "no message for --checkpoint-interval '\(bad)'")
        }
    }

    func testNoProgramIsRejected() throws {
        let r = try runToCompletion(Paths.ghostRun, [], timeout: 60)
        XCTAssertNotEqual(r.status, .exited(0))
        if case .signaled = r.status { XCTFail("ghost-run crashed: \(r.status)\n\(r.stderr)") }
        XCTAssertFalse(r.stderr.isEmpty, "no message when no program is given")
    }

    /// A program that does not exist: 127 and a message naming it.
    func testMissingProgramGives127() throws {
        let dir = try makeTempDir("missing")
        let r = try runToCompletion(Paths.ghostRun, ["--image-dir", dir + "/i", "--", dir + "/no-such-program"],
                                    cwd: dir, timeout: 60)
        XCTAssertEqual(r.status, .exited(127), r.stderr)
        XCTAssertTrue(r.stderr.contains("no-such-program"), "the message does not name the program: \(r.stderr)")
        let r2 = try runToCompletion(Paths.ghostRun, ["--image-dir", dir + "/i2", "--", "ghost-no-such-command-xyz"],
                                     cwd: dir, timeout: 60)
        XCTAssertEqual(r2.status, .exited(127), r2.stderr)
        XCTAssertTrue(r2.stderr.contains("ghost-no-such-command-xyz"), r2.stderr)
    }

    /// A file that is not executable: 126 and a message naming it.
    func testNonExecutableProgramGives126() throws {
        let dir = try makeTempDir("noexec")
        let path = dir + "/not-executable"
        _ = FileManager.default.createFile(atPath: path, contents: Data("#!/bin/sh\necho hi\n".utf8),
                                       attributes: [.posixPermissions: 0o644])
        let r = try runToCompletion(Paths.ghostRun, ["--image-dir", dir + "/i", "--", path], cwd: dir, timeout: 60)
        // Even root cannot execute a file without any x bit.
        XCTAssertEqual(r.status, .exited(126), r.stderr)
        XCTAssertTrue(r.stderr.contains("not-executable"), "the message does not name the program: \(r.stderr)")
    }

    // MARK: Jobs ghost cannot checkpoint without namespaces

    /// With --no-namespaces, a job with a child process: the checkpoint is
    /// refused with a clear "not supported"-style message, the job keeps
    /// running and finishes normally, and no checkpoint is left to resume.
    func testForkingJobCheckpointRefusedJobContinues() throws {
        try refusedCheckpoint("forker")
    }

    /// Same for a job with a second thread.
    func testThreadedJobCheckpointRefusedJobContinues() throws {
        try refusedCheckpoint("threader")
    }

    private func refusedCheckpoint(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let exe = try program(name)
        let dir = try makeTempDir(name)
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, ghostArgs: ["--no-namespaces"], cwd: dir)
        try run.waitFor("ready")
        run.signal(SIGUSR1)
        let (i, msg) = try run.waitFor(anyOf: ["ghost: checkpoint 1 failed", "ghost: checkpoint 1 done"], in: .stderr, timeout: 60)
        XCTAssertEqual(i, 0, "a \(name) job was checkpointed: \(msg)", file: file, line: line)
        XCTAssertTrue(msg.contains("without user namespaces"),
                      "the refusal does not say why: \(msg)", file: file, line: line)
        XCTAssertTrue(run.isRunning, "ghost-run stopped after the refused checkpoint\n\(run.transcript)", file: file, line: line)
        try run.write("go\n")
        try run.waitFor("ok ", timeout: 60)
        try expectExit(run, .exited(0), file: file, line: line)
        XCTAssertEqual(checkpointFiles(images).count, 0, "a refused checkpoint left a checkpoint file", file: file, line: line)
        // Nothing to resume: the job ended before any checkpoint (and says so).
        let r = try runToCompletion(Paths.ghostResume, [images], timeout: 60)
        XCTAssertFalse(r.stderr.contains("resumed checkpoint"), "ghost-resume resumed a refused checkpoint: \(r.stderr)",
                       file: file, line: line)
        XCTAssertTrue(r.stderr.contains("already ended (exit status 0") && r.stderr.contains("before any checkpoint"),
                      r.stderr, file: file, line: line)
    }
}
