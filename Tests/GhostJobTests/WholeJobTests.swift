import Foundation
import XCTest

/// Whole jobs (issue #3): threads, process trees, shell scripts with
/// pipelines, run in their own user + PID namespaces so PIDs come back.
final class WholeJobTests: GhostTestCase {
    /// Five threads (computing, on a condition variable, in a barrier), each
    /// with its own TLS value and signal mask: after kill -9 and resume all
    /// are there with the same thread IDs, join, and give the uninterrupted result.
    func testThreadsKeepTheirIdsAndFinish() throws {
        let exe = try program("threads_work")
        let reference = try runToCompletion("/bin/sh", ["-c", "echo go | \(exe)"], timeout: 120)
        XCTAssertEqual(reference.status, .exited(0), reference.stderr)
        let expected = reference.stdout.split(separator: "\n").first { $0.hasPrefix("ok ") }.map(String.init) ?? "?"
        let okLine = try checkpointKillResume("threads_work")
        XCTAssertEqual(okLine, expected)
    }

    /// A parent with children, a grandchild, a zombie and a process group of
    /// its own: waitpid on the stored PIDs works after resume and the exit
    /// statuses are those of an uninterrupted run.
    func testProcessTreeKeepsPidsZombiesAndStatuses() throws {
        let okLine = try checkpointKillResume("tree_wait")
        XCTAssertTrue(okLine.contains("statuses add to 100"), okLine)
    }

    /// The job in its namespace sees the same uid and gid as without ghost.
    func testJobSeesItsOwnUidAndPids() throws {
        let dir = try makeTempDir("ids")
        let run = try startGhostRun("/bin/sh", ["-c", "echo uid=$(id -u) gid=$(id -g) pid=$$; ls /proc | grep -c '^[0-9]'"],
                                    imageDir: dir + "/images", cwd: dir)
        try expectExit(run, .exited(0))
        XCTAssertTrue(run.stdoutText.contains("uid=\(getuid()) gid=\(getgid())"), run.transcript)
        // In its own PID namespace the shell is PID 2 (ghost-init is 1), and /proc shows only the job.
        XCTAssertTrue(run.stdoutText.contains("pid=2"), run.transcript)
    }

    /// A bash script as the job: loop of programs, pipelines, a background
    /// job and wait; checkpointed while a child runs, killed, resumed: the
    /// output file is identical to an uninterrupted run's.
    func testShellScriptWithPipelines() throws {
        let script = Paths.programsDir + "/pipeline.sh"
        let dir = try makeTempDir("script")
        let reference = try runToCompletion("/bin/bash", [script, dir + "/ref.txt"], cwd: dir, timeout: 120)
        XCTAssertEqual(reference.status, .exited(0), reference.stderr)

        let images = dir + "/images"
        let run = try startGhostRun("/bin/bash", [script, dir + "/out.txt"], imageDir: images, cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        sleepSeconds(1.5)
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: nil)
        let resumed = try startGhostResume(images, cwd: dir)
        _ = try waitResumed(resumed)
        try resumed.waitFor("ok script", in: .stdout, timeout: 120)
        try expectExit(resumed, .exited(0))
        let want = try String(contentsOfFile: dir + "/ref.txt", encoding: .utf8)
        let got = try String(contentsOfFile: dir + "/out.txt", encoding: .utf8)
        XCTAssertEqual(got, want, "\(resumed.transcript)")
    }

    /// A forked worker talking to its parent over a pipe (the forker
    /// program): checkpointed, resumed, the parent closes the pipe and reaps
    /// the worker's status.
    func testForkedWorkerWithPipe() throws {
        try checkpointKillResume("forker")
    }

    /// The threader program: a thread blocked reading a pipe is woken after resume.
    func testThreadBlockedOnPipe() throws {
        try checkpointKillResume("threader")
    }

    /// Snapshots of processes whose parent is in the job are hidden children
    /// of those processes: after several checkpoints the job's processes are
    /// exactly the ones it had (no extra child, no leftover zombie), and the
    /// tree still waits for its children as before.
    func testSnapshotsLeaveNoTraceInTheTree() throws {
        let exe = try program("tree_wait")
        let dir = try makeTempDir("notrace")
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        func shape() -> [String] {
            ProcInfo.descendants(of: run.pid).map { "\($0):\(ProcInfo.state($0).map { $0 == "Z" ? "Z" : "live" } ?? "gone")" }
        }
        let before = shape()
        XCTAssertGreaterThanOrEqual(before.count, 5, "ghost-init, the parent, two children, a grandchild (and a zombie)")
        for n in 1...3 { try checkpoint(run, number: n) }
        XCTAssertEqual(shape(), before, "the checkpoints changed the job's process tree\n\(run.transcript)")
        try finishResumed(run, timeout: 60)
    }

    /// Threads keep their names, CPU affinity, nice values and scheduling
    /// policy (the program checks each thread itself after resume).
    func testThreadNamesAffinityNiceAndPolicy() throws {
        let line = try checkpointKillResume("thread_attrs")
        XCTAssertTrue(line.contains("main is thread_attrs"), line)
    }
}
