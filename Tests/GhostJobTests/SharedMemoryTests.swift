import Foundation
import XCTest

/// Shared memory between the job's processes (issue #3): after resume a
/// write by one process is still seen by the other, and every page comes back.
final class SharedMemoryTests: GhostTestCase {
    /// Parent and child share anonymous memory, two memfds (one still open,
    /// sealed, with a page reached only through its descriptor), a POSIX shm
    /// object and a disk file, plus a private copy of the memfd. Checkpointed,
    /// killed; the shm object is deleted (as on another node) and the disk
    /// file scribbled on (as by the job after the checkpoint); resumed: the
    /// program checks every page, the seals, the shared offset and that all
    /// five regions are still shared (ping-pong through each).
    func testMemorySharedFiveWaysStaysShared() throws {
        let exe = try program("shared_memory")
        let dir = try makeTempDir("shm")
        let shmName = "/ghost-test-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        let disk = dir + "/mapped.dat"
        defer { unlink("/dev/shm" + shmName) }
        try runCheckpointKill(exe, [shmName, disk], imageDir: dir + "/images", cwd: dir)

        XCTAssertEqual(unlink("/dev/shm" + shmName), 0, "the job's shm object should exist after the kill")
        let scribble = [UInt8](repeating: 0xAB, count: 4096)
        let fd = open(disk, O_WRONLY)
        XCTAssertEqual(pwrite(fd, scribble, 4096, 2 * 4096), 4096)
        close(fd)

        let resumed = try startGhostResume(dir + "/images", cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        try finishResumed(resumed, timeout: 90)
    }

    /// The same program checkpointed twice (the second time after a resume,
    /// when the objects are ghost's memfds) and resumed from the second where
    /// the small shared-mapped disk file is gone (another node): recreated.
    func testSharedMemorySurvivesTwoResumes() throws {
        let exe = try program("shared_memory")
        let dir = try makeTempDir("shm2")
        let shmName = "/ghost-test-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        defer { unlink("/dev/shm" + shmName) }
        let images = dir + "/images"
        try runCheckpointKill(exe, [shmName, dir + "/mapped.dat"], imageDir: images, cwd: dir)
        let first = try startGhostResume(images, cwd: dir)
        let (_, pid2) = try waitResumed(first, exe: exe)
        try checkpoint(first, number: 2)
        try killNode(first, jobPid: pid2)
        // On another node the small file the job maps shared would be missing.
        XCTAssertEqual(unlink(dir + "/mapped.dat"), 0)
        let second = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(second, exe: exe)
        XCTAssertEqual(n, 2)
        try finishResumed(second, timeout: 90)
    }

    /// System V shared memory is not supported: the checkpoint fails with a
    /// message naming the process and the segment; the job keeps running.
    func testSysVSharedMemoryIsRefusedClearly() throws {
        let dir = try makeTempDir("sysv")
        let src = dir + "/sysv.c"
        try """
        #include <stdio.h>
        #include <sys/shm.h>
        #include <unistd.h>
        int main(void) {
            int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
            char *p = shmat(id, NULL, 0);
            shmctl(id, IPC_RMID, NULL);
            p[0] = 1;
            printf("ready\\n"); fflush(stdout);
            char buf[8]; if (read(0, buf, sizeof buf) < 0) return 1;
            printf("ok %d\\n", p[0]); return 0;
        }
        """.write(toFile: src, atomically: true, encoding: .utf8)
        let exe = dir + "/sysv"
        let cc = try runToCompletion("/usr/bin/env", ["cc", "-o", exe, src], timeout: 60)
        XCTAssertEqual(cc.status, .exited(0), cc.stderr)
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        run.signal(SIGUSR1)
        let failed = try run.waitFor("checkpoint 1 failed", in: .stderr, timeout: 60)
        XCTAssertTrue(failed.contains("System V shared memory"), failed)
        try run.write("go\n")
        try run.waitFor("ok 1", in: .stdout, timeout: 30)
        try expectExit(run, .exited(0))
    }
}

/// Files deleted while the job uses them (tmpfile(), unlinked files kept
/// open or mapped): their contents are in the image.
final class DeletedFileTests: GhostTestCase {
    func testDeletedFilesOpenOrMappedComeBack() throws {
        try checkpointKillResume("deleted_files")
    }

    /// A deleted file only mapped privately, with no descriptor left (like a
    /// library replaced by an upgrade): its pages are read through the mapping.
    func testPrivateMappingOfDeletedFileComesBack() throws {
        let line = try checkpointKillResume("deleted_files", ["private-only"])
        XCTAssertEqual(line, "ok still running, page intact")
    }

    /// The job's executable and a shared library it uses are replaced while
    /// it runs (a rebuild, a package upgrade): the checkpoint stores the old
    /// ones, and the resumed job runs the old code to the same result.
    func testReplacedExecutableAndLibrary() throws {
        let dir = try makeTempDir("replaced")
        func cc(_ args: [String]) throws {
            let r = try runToCompletion("/usr/bin/env", ["cc"] + args, cwd: dir, timeout: 60)
            XCTAssertEqual(r.status, .exited(0), r.stderr)
        }
        try "unsigned long step(unsigned long x) { return x * 6364136223846793005UL + 1442695040888963407UL; }\n"
            .write(toFile: dir + "/lib.c", atomically: true, encoding: .utf8)
        try """
        #include <stdio.h>
        #include <unistd.h>
        unsigned long step(unsigned long);
        int main(void) {
            unsigned long x = 1;
            for (int i = 0; i < 1000; i++) x = step(x);
            printf("ready\\n"); fflush(stdout);
            char buf[8]; if (read(0, buf, sizeof buf) < 0) return 1;
            for (int i = 0; i < 1000; i++) x = step(x);
            printf("ok %lx\\n", x); return 0;
        }
        """.write(toFile: dir + "/main.c", atomically: true, encoding: .utf8)
        try cc(["-shared", "-fPIC", "-o", "libstep.so", "lib.c"])
        try cc(["-o", "app", "main.c", "-L.", "-lstep", "-Wl,-rpath,\(dir)"])
        let reference = try runToCompletion(dir + "/app", [], cwd: dir, input: "go\n", timeout: 60)
        let want = reference.stdout.split(separator: "\n").last.map(String.init) ?? "?"

        let run = try startGhostRun(dir + "/app", [], imageDir: dir + "/images", cwd: dir)
        let pid = try jobPid(of: run)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        // A rebuild: new files under the same names, different code.
        try "unsigned long step(unsigned long x) { return x + 1; }\n".write(toFile: dir + "/lib.c", atomically: true, encoding: .utf8)
        unlink(dir + "/libstep.so"); unlink(dir + "/app")
        try cc(["-shared", "-fPIC", "-o", "libstep.so", "lib.c"])
        try cc(["-o", "app", "main.c", "-L.", "-lstep", "-Wl,-rpath,\(dir)"])
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(dir + "/images", cwd: dir)
        _ = try waitResumed(resumed)
        try resumed.write("go\n")
        let got = try resumed.waitFor(anyOf: ["ok ", "FAIL"], in: .stdout, timeout: 60)
        XCTAssertEqual(got.line, want, resumed.transcript)
        try expectExit(resumed, .exited(0))
    }
}
