// One end-to-end test per kind of process state: a C program from
// Tests/programs reaches a known state, is checkpointed by ghost-run, killed
// with it (a node failure), resumed by ghost-resume, released, and checks
// its own state ("ok ..." and exit 0).

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ProcessStateTests: GhostTestCase {
    // MARK: Memory

    /// 64 MiB malloc, a 16 MiB mmap, a sparse mapping (untouched pages read
    /// as zero) and a read-only region come back byte for byte with their
    /// protections, and stay writable.
    func testAnonymousMemory() throws {
        let ok = try checkpointKillResume("anon_memory")
        XCTAssertTrue(ok.contains("anonymous memory intact"), ok)
    }

    /// The same, written back with process_vm_writev instead of UFFDIO_COPY
    /// (what a kernel or user without userfaultfd gets).
    func testAnonymousMemoryWithoutUserfaultfd() throws {
        let ok = try checkpointKillResume("anon_memory", resumeEnv: ["GHOST_NO_UFFD_RESTORE": "1"])
        XCTAssertTrue(ok.contains("anonymous memory intact"), ok)
    }

    /// Areas with MADV_DONTFORK and MADV_WIPEONFORK, which a forked snapshot
    /// does not hold as they are, keep their bytes (read from the job
    /// itself) and their advice: a child forked after the restart sees the
    /// one zeroed and not the other.
    func testForkAdviceAreas() throws {
        let ok = try checkpointKillResume("fork_flags")
        XCTAssertTrue(ok.contains("fork advice intact"), ok)
    }

    /// The heap and the program break come back; malloc keeps working
    /// (256 MiB more through brk and mmap) and sbrk moves the break.
    func testHeapAndBrkKeepWorking() throws {
        try checkpointKillResume("heap_brk")
    }

    /// A 4000-frame recursion is intact, and the stack still grows down
    /// into pages that did not exist at checkpoint time.
    func testDeepStackAndGrowth() throws {
        try checkpointKillResume("stack_deep")
    }

    /// Written (copy-on-write) pages of a private file mapping keep their
    /// new bytes, unwritten pages show the file, the file is unchanged, and
    /// the executable's .data/.bss globals are intact.
    func testPrivateFileMappingAndGlobals() throws {
        let dir = try makeTempDir("fmap")
        try checkpointKillResume("file_mapping", [dir])
        // The program also checks this; check from outside that the private
        // writes never reached the file.
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/mapped.bin"))
        XCTAssertEqual(data.count, 1024 * 1024)
    }

    /// A PROT_NONE page between two read-write pages still faults (SIGSEGV at
    /// its address, caught with sigsetjmp) after resume.
    func testGuardPageStillFaults() throws {
        try checkpointKillResume("guard_page")
    }

    // MARK: vDSO, CPU state, TLS, rseq

    /// clock_gettime/gettimeofday/time through the vDSO work after resume,
    /// time moves forward, and [vdso] is where glibc expects it.
    func testVDSOClocksWork() throws {
        try checkpointKillResume("vdso_clock")
    }

    /// All 16 ymm registers (xmm without AVX2), held live by an inline-asm
    /// spin loop during the checkpoint, are exact after resume; MXCSR and
    /// the x87 control word (FE_UPWARD, FTZ/DAZ) too.
    func testAVXRegistersLiveInLoop() throws {
        let ok = try checkpointKillResume("fpu_avx", ["asm"], release: .signal(SIGUSR2), settle: 0.5)
        XCTAssertTrue(ok.contains("asm:"), ok)
    }

    /// A chaotic floating-point loop (double in xmm, long double in x87)
    /// checkpointed mid-flight gives bit-identical results to a recomputation
    /// of the same number of iterations.
    func testFloatingPointSeriesBitIdentical() throws {
        try checkpointKillResume("fpu_avx", ["series"], release: .signal(SIGUSR2), settle: 0.5)
    }

    /// __thread variables (.tdata and .tbss), the fs base and errno.
    func testThreadLocalStorage() throws {
        try checkpointKillResume("tls")
    }

    /// rseq is registered again: sched_getcpu() and the rseq cpu_id follow
    /// sched_setaffinity pinning to each CPU.
    func testRseqAndSchedGetcpu() throws {
        try checkpointKillResume("rseq_cpu")
    }

    /// clear_child_tid (PR_GET_TID_ADDRESS) is the same after resume.
    func testClearChildTid() throws {
        try checkpointKillResume("clear_child_tid")
    }

    // MARK: Signals

    /// A process group led by a child and joined by its siblings: the
    /// siblings are rebuilt at the same time as the leader and must wait
    /// for its group (resume failed with EPERM most of the time before).
    func testProcessGroupLedBySibling() throws {
        for _ in 0..<3 { try checkpointKillResume("sibling_pgrp") }
    }

    /// Children stopped by SIGSTOP and by SIGTSTP are stopped again after a
    /// resume (they ran on before), and run after SIGCONT.
    func testStoppedProcessesStayStoppedAfterResume() throws {
        try checkpointKillResume("stopped_child")
    }

    /// A checkpoint of the running job leaves its stopped children stopped.
    func testStoppedProcessesStayStoppedAfterCheckpoint() throws {
        let exe = try program("stopped_child")
        let dir = try makeTempDir("stopped")
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try finishResumed(run)
    }

    /// Handlers (SA_SIGINFO, SA_RESETHAND, SIG_IGN), their flags and
    /// sa_mask, and the blocked mask; handlers run after resume.
    func testSignalHandlersAndBlockedMask() throws {
        try checkpointKillResume("signals_handler")
    }

    /// A blocked, pending SIGUSR2 runs its handler exactly once after
    /// unblocking; a real-time signal queued twice arrives twice with its values.
    func testPendingSignalsDeliveredOnce() throws {
        try checkpointKillResume("signal_pending")
    }

    /// The sigaltstack is intact and SA_ONSTACK handlers run on it.
    func testSigaltstack() throws {
        try checkpointKillResume("sigaltstack")
    }

    // MARK: Blocked system calls

    /// Frozen inside sleep(6): after resume sleep() returns 0 (not cut
    /// short) and the program goes on.
    func testBlockedInSleep() throws {
        try checkpointKillResume("blocked_sleep", ["sleep", "6"], release: .nothing, settle: 0.5)
    }

    /// Frozen inside nanosleep(6) in the usual EINTR loop.
    func testBlockedInNanosleep() throws {
        try checkpointKillResume("blocked_sleep", ["nanosleep", "6"], release: .nothing, settle: 0.5)
    }

    /// Threads in epoll_wait, epoll_pwait, sigtimedwait, and accept/recvmsg
    /// with SO_RCVTIMEO, which the kernel ends with EINTR after a stop: a
    /// checkpoint the job goes on from, and a resume, leave each waiting
    /// for what it waited for (it was EINTR in both).
    func testWaitsThatAStopEndsWithEINTRGoOn() throws {
        let exe = try program("eintr_waits")
        let dir = try makeTempDir("eintr")
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try finishResumed(run, timeout: 60)
        try checkpointKillResume("eintr_waits")
    }

    /// Frozen inside read(0): the line written to ghost-resume's stdin after
    /// the restart arrives whole, and the next read works too.
    func testBlockedInReadOfStdin() throws {
        let ok = try checkpointKillResume("blocked_read", release: .line("release 4711\nsecond line"), settle: 0.3)
        XCTAssertTrue(ok.contains("'release 4711'"), ok)
    }

    /// Bytes buffered in a pipe that the process holds both ends of.
    func testPipeBufferedData() throws {
        try checkpointKillResume("pipe_buffer")
    }

    // MARK: Process attributes and files

    /// cwd, umask, rlimits and comm.
    func testCwdUmaskRlimitsComm() throws {
        let dir = try makeTempDir("attrs")
        try checkpointKillResume("proc_attrs", [dir])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/created-after-resume"))
    }

    /// flock, POSIX record locks (with their ranges and owner) and OFD locks
    /// are held again after resume: a new process sees each conflict.
    func testFileLocksHeldAgain() throws {
        try checkpointKillResume("file_locks")
    }

    /// Regular files: fd numbers, offsets, O_RDONLY / O_WRONLY|O_APPEND /
    /// O_RDWR, FD_CLOEXEC, a dup sharing its offset, a second open with its own.
    func testRegularFileDescriptors() throws {
        let dir = try makeTempDir("fds")
        try checkpointKillResume("files_fds", [dir])
    }

    /// A file written line by line while the job runs: checkpoint, let the
    /// job write more, kill, resume: the file (and a fully buffered stdio
    /// stream's file) is byte-identical to an uninterrupted run's.
    func testProgressiveOutputMatchesUninterruptedRun() throws {
        let exe = try program("output_progressive")
        let dir = try makeTempDir("progressive")
        let lines = "300", delay = "10"

        let reference = dir + "/reference.txt"
        let ref = try runToCompletion(exe, [reference, lines, delay], timeout: 120)
        XCTAssertEqual(ref.status, .exited(0), ref.stdout + ref.stderr)

        let output = dir + "/output.txt"
        let images = dir + "/images"
        let run = try startGhostRun(exe, [output, lines, delay], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        sleepSeconds(1.0)
        try checkpoint(run, number: 1)
        let sizeAtCheckpoint = fileSize(output) ?? 0
        sleepSeconds(0.7)  // the job keeps writing past the checkpoint
        let sizeAtKill = fileSize(output) ?? 0
        try killNode(run, jobPid: pid)
        XCTAssertGreaterThan(sizeAtKill, sizeAtCheckpoint,
                             "the job did not write after the checkpoint: the test does not exercise truncation")
        XCTAssertFalse(run.stdoutText.contains("ok "), "the job finished before it was killed: \(run.transcript)")

        let resumed = try startGhostResume(images, cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        try resumed.waitFor("ok wrote 300 lines", timeout: 120)
        try expectExit(resumed, .exited(0))

        try assertFilesEqual(output, reference)
        try assertFilesEqual(output + ".raw", reference + ".raw")
    }

    // MARK: Helpers

    func assertFilesEqual(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let da = try Data(contentsOf: URL(fileURLWithPath: a))
        let db = try Data(contentsOf: URL(fileURLWithPath: b))
        if da != db {
            let firstDiff = zip(da, db).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(da.count, db.count)
            XCTFail("\(a) (\(da.count) bytes) differs from \(b) (\(db.count) bytes) at byte \(firstDiff)", file: file, line: line)
        }
    }
}
