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

        // The refused checkpoint left nothing; checkpoint 1 resumes (named:
        // the job ended, so it would not be resumed unasked).
        XCTAssertEqual(checkpointFiles(images).map(\.number), [1])
        let resumed = try startGhostResume(images, ["--checkpoint", "1"], cwd: dir)
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

extension DescriptorTests {
    /// The unix socket and FIFO/eventfd/timerfd/signalfd/epoll programs as an
    /// ordinary user (sock_diag, SO_PEEK_OFF, kcmp, TFD_IOC_SET_TICKS need
    /// no privilege). As root: as user `ghosttest` through setpriv, with the
    /// tools copied where that user can run them.
    func testDescriptorsAsUnprivilegedUser() throws {
        var wrapper: [String] = []
        var run = Paths.ghostRun, resume = Paths.ghostResume
        let dir = try makeTempDir("fds-user")
        chmod(dir, 0o755)
        let work = dir + "/work"
        mkdir(work, 0o700)
        if GhostTestCase.isRoot {
            let user = "ghosttest"
            if getpwnam(user) == nil {
                let r = try runToCompletion("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", user], timeout: 60)
                XCTAssertEqual(r.status, .exited(0), "useradd \(user): \(r.stderr)")
            }
            guard let pw = getpwnam(user) else { throw HarnessError("user \(user) does not exist and could not be created") }
            guard chown(work, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else { throw HarnessError("chown \(work)") }
            let bin = try makeTempDir("fds-bin")
            chmod(bin, 0o755)
            for tool in ["ghost-run", "ghost-resume"] {
                try FileManager.default.copyItem(atPath: Paths.binDir + "/" + tool, toPath: bin + "/" + tool)
                chmod(bin + "/" + tool, 0o755)
            }
            run = bin + "/ghost-run"
            resume = bin + "/ghost-resume"
            wrapper = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--"]
        }
        // Also shared memory, deleted files and thread attributes: what an
        // ordinary user's job holds must come back without privilege too.
        let shmName = "/ghost-user-\(getpid())"
        defer { unlink("/dev/shm" + shmName) }
        let jobs: [(String, [String])] = [("unix_sockets", []), ("fd_kinds", []), ("deleted_files", []),
                                          ("shared_memory", [shmName, work + "/mapped.dat"]), ("thread_attrs", [])]
        for (name, args) in jobs {
            let exe = try program(name)
            let images = work + "/images-" + name
            let job = try startGhostRun(exe, args, imageDir: images, cwd: work, wrapper: wrapper, ghostRunPath: run)
            let pid = try jobPid(of: job, exe: exe)
            try job.waitFor("ready", in: .stdout, timeout: 60)
            try checkpoint(job, number: 1)
            try killNode(job, jobPid: pid)
            let resumed = try startGhostResume(images, cwd: work, wrapper: wrapper, ghostResumePath: resume)
            _ = try waitResumed(resumed, exe: exe)
            try resumed.write("go\n")
            let okLine = try resumed.waitFor(anyOf: ["ok ", "FAIL"], in: .stdout, timeout: 120)
            XCTAssertEqual(okLine.index, 0, "\(name) as an ordinary user: \(okLine.line)\n\(resumed.transcript)")
            try expectExit(resumed, .exited(0))
        }
    }
}

extension DescriptorTests {
    /// An inotify descriptor (like fanotify, pidfd, userfaultfd, io_uring):
    /// the checkpoint fails naming it and the descriptor, the job goes on.
    func testInotifyFailsCheckpointCleanly() throws {
        let line = try failingCheckpoint("inotify")
        XCTAssertTrue(line.contains("is an inotify descriptor") && line.contains("fd 3 of process"), line)
    }

    /// An io_uring with a kernel submission thread (SQPOLL): that thread never
    /// stops for ptrace, so the freeze must not wait for it (it kept the
    /// whole job frozen for good); the checkpoint fails naming it.
    func testIoUringSubmissionThreadFailsCheckpointCleanly() throws {
        let line = try failingCheckpoint("sqpoll")
        XCTAssertTrue(line.contains("of an io_uring instance") && line.contains("iou-sqp-"), line)
    }

    /// A unix connection still waiting in the job's own listener (not
    /// accepted): the checkpoint fails saying so, the job goes on.
    func testConnectionNotAcceptedFailsCheckpointCleanly() throws {
        let line = try failingCheckpoint("pending")
        XCTAssertTrue(line.contains("accepted yet") && line.contains("of process"), line)
    }

    /// Runs sock_outside MODE, asks for checkpoint 1 once the descriptor is
    /// open, expects it to fail and the job to finish; returns the failure line.
    func failingCheckpoint(_ mode: String) throws -> String {
        let exe = try program("sock_outside")
        let dir = try makeTempDir(mode)
        let run = try startGhostRun(exe, [mode], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try run.write("go\n")
        try run.waitFor("ready2", in: .stdout, timeout: 60)
        run.signal(SIGUSR1)
        let (i, line) = try run.waitFor(anyOf: ["ghost: checkpoint 1 done", "ghost: checkpoint 1 failed"], in: .stderr, timeout: 120)
        XCTAssertEqual(i, 1, "the checkpoint should fail: \(run.transcript)")
        try run.write("go\n")
        try run.waitFor("ok socket still works", in: .stdout, timeout: 60)
        try expectExit(run, .exited(0))
        return line
    }
}

/// Pipes with one side closed in every process (make -j's jobserver, a
/// reader whose writer finished) are checkpointed and keep behaving so.
final class WidowedPipeTests: GhostTestCase {
    func testPipesWithOneSideClosedEverywhere() throws {
        try checkpointKillResume("widowed_pipes")
    }
}

/// Small files the job has open (temporary files of a compiler) are in the
/// image: one deleted after the checkpoint is recreated, one the job kept
/// writing is put back as it was.
final class ScratchFileTests: GhostTestCase {
    func testSmallOpenFilesAreRecreatedOrPutBack() throws {
        let exe = try program("scratch_files")
        let dir = try makeTempDir("scratch")
        try runCheckpointKill(exe, [], imageDir: dir + "/images", cwd: dir)
        XCTAssertEqual(unlink(dir + "/scratch.tmp"), 0)
        let garbage = [UInt8](repeating: 0x5a, count: 8000)
        let fd = open(dir + "/partial.out", O_WRONLY)
        XCTAssertEqual(pwrite(fd, garbage, garbage.count, 0), garbage.count)
        close(fd)
        let resumed = try startGhostResume(dir + "/images", cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        XCTAssertTrue(resumed.stderrText.contains("recreated \(dir)/scratch.tmp"), resumed.transcript)
        try finishResumed(resumed, timeout: 60)
    }
}

/// Files the job created and closed before the checkpoint (a compiler
/// driver's object files, a temporary file in TMPDIR) and that were deleted
/// after it are recreated at resume; a file that existed before the job is
/// not, and a file that is there at resume is left as it is.
final class ClosedFileTests: GhostTestCase {
    func testClosedFilesDeletedAfterCheckpointAreRecreated() throws {
        let exe = try program("closed_files")
        let dir = try makeTempDir("closed")
        let tmp = dir + "/tmp"
        XCTAssertEqual(mkdir(tmp, 0o755), 0)
        // There before the job: not the job's, so never recreated.
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/input.txt", contents: Data("input\n".utf8)))
        let env = environment(["TMPDIR": tmp])
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir, env: env)
        let pid = try jobPid(of: run, exe: exe)
        let line = try run.waitFor("temp ", in: .stdout, timeout: 60)
        let temp = String(line[line.range(of: "temp ")!.upperBound...]).trimmingCharacters(in: .whitespacesAndNewlines)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        // The failed run went on, finished with its files and deleted them.
        for f in [dir + "/stage1.o", dir + "/empty.flag", temp, dir + "/input.txt"] {
            XCTAssertEqual(unlink(f), 0, "unlink \(f)")
        }
        // ... and someone edited this one: it stays as it is now.
        try "user edit\n".write(toFile: dir + "/notes.txt", atomically: false, encoding: .utf8)
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(dir + "/images", cwd: dir, env: env)
        _ = try waitResumed(resumed, exe: exe)
        XCTAssertTrue(resumed.stderrText.contains("recreated 3 file(s) the job had created and closed"), resumed.transcript)
        try finishResumed(resumed, timeout: 60)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/input.txt"), "a file older than the job was recreated")
        XCTAssertEqual(try String(contentsOfFile: dir + "/notes.txt", encoding: .utf8), "user edit\n")
    }

    /// A script appending to its results with `>>` (open, write, close each
    /// time): lines the failed run appended after the checkpoint are cut
    /// off at resume, so each line is in the file once, as in an
    /// uninterrupted run; also for a file over 4 MiB (stored by its size
    /// and last bytes).
    func testFilesAppendedAfterCheckpointAreCutBack() throws {
        try appendedScenario(holdOpen: false)
    }

    /// A grown file another process has open at resume (another job
    /// appending to a shared file) is not ours to cut: left as it is, with
    /// a warning.
    func testGrownFileOpenElsewhereIsLeftAsItIs() throws {
        try appendedScenario(holdOpen: true)
    }

    /// Lines 1-10 before the checkpoint (the script waits in `read`, its
    /// files closed), 11-15 by the failed run after it, then 11-20 by the
    /// resumed run.
    private func appendedScenario(holdOpen: Bool) throws {
        let dir = try makeTempDir("appended")
        let run = try startGhostRun("/bin/bash", [Paths.programsDir + "/append_loop.sh"], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        func append(_ job: Child, _ range: ClosedRange<Int>) throws {
            for i in range {
                try job.write("\(i)\n")
                try job.waitFor("did \(i)\n", in: .stdout, timeout: 30)
            }
        }
        try append(run, 1...10)
        try checkpoint(run, number: 1)
        try append(run, 11...15)   // the failed run appends on, then dies
        try killNode(run, jobPid: nil)

        let held = holdOpen ? open(dir + "/results.txt", O_RDONLY) : -1
        defer { if held >= 0 { close(held) } }
        let resumed = try startGhostResume(dir + "/images", cwd: dir)
        _ = try waitResumed(resumed)
        try append(resumed, 11...20)
        try resumed.write("end\n")
        try resumed.waitFor("ok appended", in: .stdout, timeout: 60)
        try expectExit(resumed, .exited(0))
        let results = try String(contentsOfFile: dir + "/results.txt", encoding: .utf8)
        if holdOpen {
            XCTAssertTrue(resumed.stderrText.contains("results.txt has grown since the checkpoint but another process has it open: left as it is"),
                          resumed.transcript)
            // The lines after the checkpoint are there twice, as without ghost's help.
            XCTAssertEqual(results, (Array(1...15) + Array(11...20)).map { "line \($0)\n" }.joined(), resumed.transcript)
            return
        }
        XCTAssertTrue(resumed.stderrText.contains("cut back 2 file(s) the job had created and closed before the checkpoint, appended to since"),
                      resumed.transcript)
        XCTAssertEqual(results, (1...20).map { "line \($0)\n" }.joined(), resumed.transcript)
        let big = try String(contentsOfFile: dir + "/big.log", encoding: .utf8)
        let bigWant = String(repeating: "x", count: 5_000_000) + "\n" + (1...20).map { "entry \($0)\n" }.joined()
        XCTAssertTrue(big == bigWant, "big.log: \(big.utf8.count) bytes, expected \(bigWant.utf8.count); its end: \(big.suffix(200))")
    }
}
