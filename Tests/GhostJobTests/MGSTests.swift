// The Modified Gram-Schmidt example (examples/mgs), the workload of the
// Kerrighed ghost-process paper: a checkpointed, killed and resumed run must
// print the same final checksum and write a byte-identical result file as an
// uninterrupted run; also as an unprivileged user.

import Foundation
import GhostImage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class MGSTests: GhostTestCase {
    static let n = "300"
    static let reps = "300"

    private func finalChecksum(_ stdout: String) -> String? {
        stdout.split(separator: "\n").first { $0.hasPrefix("final checksum: ") }.map(String.init)
    }

    /// Uninterrupted run of mgs into `dir`/reference.out; returns its final line.
    private func reference(_ mgs: String, in dir: String) throws -> (line: String, file: String) {
        let file = dir + "/reference.out"
        let r = try runToCompletion(mgs, ["-n", Self.n, "-r", Self.reps, "-o", file, "-q"], timeout: 300)
        XCTAssertEqual(r.status, .exited(0), r.stderr)
        guard let line = finalChecksum(r.stdout) else { throw HarnessError("no final checksum from mgs:\n\(r.stdout)\n\(r.stderr)") }
        return (line, file)
    }

    /// ghost-run mgs → checkpoint after 20 reps → 20 more reps → kill -9 →
    /// ghost-resume → same final checksum and result file as `ref`.
    private func checkpointedRun(mgs: String, workDir: String, ref: (line: String, file: String),
                                 wrapper: [String] = [], ghostRun: String = Paths.ghostRun,
                                 ghostResume: String = Paths.ghostResume, expectUID: uid_t? = nil) throws {
        let images = workDir + "/images"
        let result = workDir + "/result.out"
        let run = try startGhostRun(mgs, ["-n", Self.n, "-r", Self.reps, "-o", result], imageDir: images,
                                    cwd: workDir, wrapper: wrapper, ghostRunPath: ghostRun)
        let pid = try jobPid(of: run, exe: mgs)
        if let expectUID {
            XCTAssertEqual(ProcInfo.uid(run.pid), expectUID, "ghost-run does not run as uid \(expectUID)")
            XCTAssertEqual(ProcInfo.uid(pid), expectUID, "the job does not run as uid \(expectUID)")
        }
        try run.waitFor("rep 20/\(Self.reps) ", timeout: 120)
        try checkpoint(run, number: 1)
        try run.waitFor("rep 40/\(Self.reps) ", timeout: 120)   // the result file grows past the checkpoint
        XCTAssertFalse(run.stdoutText.contains("final checksum"), "mgs finished before it was killed: use more reps")
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(images, cwd: workDir, wrapper: wrapper, ghostResumePath: ghostResume)
        let (n, newPid) = try waitResumed(resumed, exe: mgs)
        XCTAssertEqual(n, 1)
        if let expectUID {
            XCTAssertEqual(ProcInfo.uid(newPid), expectUID, "the resumed job does not run as uid \(expectUID)")
        }
        try resumed.waitFor("final checksum: ", timeout: 300)
        try expectExit(resumed, .exited(0), timeout: 300)
        XCTAssertEqual(finalChecksum(resumed.stdoutText), ref.line,
                       "resumed run's checksum differs from the uninterrupted run's\n\(resumed.transcript)")
        let a = try Data(contentsOf: URL(fileURLWithPath: result))
        let b = try Data(contentsOf: URL(fileURLWithPath: ref.file))
        XCTAssertEqual(a, b, "result file of the resumed run (\(a.count) bytes) differs from the uninterrupted run's (\(b.count) bytes)")
        // The resumed process printed the reps after the checkpoint, ending at the last one.
        XCTAssertTrue(resumed.stdoutText.contains("rep \(Self.reps)/\(Self.reps) "), resumed.transcript)
    }

    /// Checkpointed + killed + resumed MGS = uninterrupted MGS (checksum and result file).
    func testMGSResumedMatchesUninterrupted() throws {
        let mgs = try ProgramBuilder.shared.mgs()
        let dir = try makeTempDir("mgs")
        let ref = try reference(mgs, in: dir)
        let work = dir + "/work"
        mkdir(work, 0o700)
        try checkpointedRun(mgs: mgs, workDir: work, ref: ref)
    }

    /// The same scenario as an ordinary user. As root: as user `ghosttest`
    /// (created if missing) through setpriv, with the tools copied to a
    /// directory everyone can read. Not root: this user already is unprivileged.
    func testMGSAsUnprivilegedUser() throws {
        let mgs = try ProgramBuilder.shared.mgs()
        let dir = try makeTempDir("mgs-user")
        chmod(dir, 0o755)
        let ref = try reference(mgs, in: dir)

        guard GhostTestCase.isRoot else {
            let work = dir + "/work"
            mkdir(work, 0o700)
            try checkpointedRun(mgs: mgs, workDir: work, ref: ref, expectUID: geteuid())
            return
        }

        let user = "ghosttest"
        if getpwnam(user) == nil {
            let r = try runToCompletion("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", user], timeout: 60)
            XCTAssertEqual(r.status, .exited(0), "useradd \(user): \(r.stderr)")
        }
        guard let pw = getpwnam(user) else { throw HarnessError("user \(user) does not exist and could not be created") }
        let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid

        // Tools in a directory every user can read and traverse.
        let bin = try makeTempDir("mgs-bin")
        chmod(bin, 0o755)
        for tool in ["ghost-run", "ghost-resume"] {
            let dst = bin + "/" + tool
            try FileManager.default.copyItem(atPath: Paths.binDir + "/" + tool, toPath: dst)
            chmod(dst, 0o755)
        }
        let work = dir + "/work"
        mkdir(work, 0o700)
        guard chown(work, uid, gid) == 0 else { throw HarnessError("chown \(work): \(String(cString: strerror(errno)))") }

        let wrapper = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--"]
        // The tools must be runnable by that user at all (shared libraries readable, etc.).
        let probe = try runToCompletion(wrapper[0], Array(wrapper.dropFirst())
                                            + [bin + "/ghost-run", "--image-dir", work + "/probe", "--", "/bin/true"],
                                        cwd: work, timeout: 60)
        XCTAssertEqual(probe.status, .exited(0), "ghost-run -- /bin/true as \(user): \(probe.stdout)\(probe.stderr)")

        try checkpointedRun(mgs: mgs, workDir: work, ref: ref, wrapper: wrapper,
                            ghostRun: bin + "/ghost-run", ghostResume: bin + "/ghost-resume", expectUID: uid)
        // The image belongs to the user and is private.
        var st = stat()
        XCTAssertEqual(stat(work + "/images", &st), 0)
        XCTAssertEqual(st.st_uid, uid, "image directory not owned by \(user)")
        XCTAssertEqual(st.st_mode & 0o077, 0, "image directory is readable by others: mode \(String(st.st_mode & 0o777, radix: 8))")
    }

    /// OpenMP MGS with OMP_NUM_THREADS=2 (a job with two threads working in
    /// parallel regions and meeting at barriers): checkpointed mid-run,
    /// killed, resumed, checkpointed again after the resume, killed, resumed:
    /// the same checksum and result file as an uninterrupted run.
    func testOpenMPMGSCheckpointedTwice() throws {
        let mgs = try ProgramBuilder.shared.mgsOMP()
        let dir = try makeTempDir("mgs-omp")
        let env = environment(["OMP_NUM_THREADS": "2"])
        let refFile = dir + "/reference.out"
        let r = try runToCompletion(mgs, ["-n", Self.n, "-r", Self.reps, "-o", refFile, "-q"], environment: env, timeout: 600)
        XCTAssertEqual(r.status, .exited(0), r.stderr)
        XCTAssertTrue(r.stderr.contains("2 OpenMP threads"), r.stderr)
        let refLine = try XCTUnwrap(finalChecksum(r.stdout), r.stdout)

        let images = dir + "/images", result = dir + "/result.out"
        let run = try startGhostRun(mgs, ["-n", Self.n, "-r", Self.reps, "-o", result], imageDir: images, cwd: dir, env: env)
        let pid = try jobPid(of: run, exe: mgs)
        try run.waitFor("rep 20/\(Self.reps) ", timeout: 300)
        try checkpoint(run, number: 1)
        try run.waitFor("rep 40/\(Self.reps) ", timeout: 300)
        try killNode(run, jobPid: pid)

        let first = try startGhostResume(images, cwd: dir, env: env)
        let (_, pid2) = try waitResumed(first, exe: mgs)
        // The resumed job holds exactly the descriptors it had (none of ghost-resume's leaked in).
        let store1 = try ImageStore(path: images, create: false)
        let had = try Manifest.decode(try store1.loadManifest(1)).processes.first { $0.zombieStatus == nil }?.fds.map(\.fd)
        store1.close()
        let has = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid2)/fd").compactMap { Int32($0) }
        XCTAssertEqual(Set(has), Set(had ?? []), "descriptors of the resumed job")
        try first.waitFor("rep 30/\(Self.reps) ", timeout: 300)
        try checkpoint(first, number: 2)
        try first.waitFor("rep 50/\(Self.reps) ", timeout: 300)
        XCTAssertFalse(first.stdoutText.contains("final checksum"), "mgs finished before it was killed: use more reps")
        try killNode(first, jobPid: pid2)

        // Both images hold the OpenMP worker thread.
        let store = try ImageStore(path: images, create: false)
        for n in [1, 2] {
            let m = try Manifest.decode(try store.loadManifest(n))
            XCTAssertEqual(m.processes.first { $0.zombieStatus == nil }?.threads.count, 2, "checkpoint \(n)")
        }
        store.close()

        let second = try startGhostResume(images, cwd: dir, env: env)
        let (n, _) = try waitResumed(second, exe: mgs)
        XCTAssertEqual(n, 2)
        try second.waitFor("final checksum: ", timeout: 600)
        try expectExit(second, .exited(0), timeout: 300)
        XCTAssertEqual(finalChecksum(second.stdoutText), refLine, second.transcript)
        let a = try Data(contentsOf: URL(fileURLWithPath: result))
        let b = try Data(contentsOf: URL(fileURLWithPath: refFile))
        XCTAssertEqual(a, b, "result file of the twice-resumed OpenMP run differs from the uninterrupted run's")
    }
}
