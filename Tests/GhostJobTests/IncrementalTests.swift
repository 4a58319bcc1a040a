import XCTest
import Glibc

/// Incremental checkpoints: pages written between checkpoints are tracked
/// (userfaultfd write-protect + PAGEMAP_SCAN), unchanged blocks are reused
/// and blocks with a few written pages get overlays. Each checkpoint of a
/// chain must restore exactly the memory of its own moment.
final class IncrementalTests: GhostTestCase {
    /// Program `incremental`: gen 0 -> ckpt 1, step (scattered rewrites, zeroed
    /// and MADV_DONTNEED pages, new area; in a private file mapping, pages
    /// copied on write and copies dropped with MADV_DONTNEED, which must come
    /// back as the file's bytes, not as the stored copy) -> ckpt 2, step (area unmapped,
    /// another mapped, a child forked that execs) -> ckpt 3, nothing -> ckpt 4,
    /// step -> kill. Checkpoints 2, 3 and 4 are resumed one by one and the
    /// program checks every page against its generation; checkpoint 4 must
    /// have written almost nothing. Then a resumed job is checkpointed again
    /// twice (tracking starts again after a resume) and that is resumed too.
    /// (It resumes checkpoint 2, not 3: a job resumed with a pipe between two
    /// of its processes can get a stray pipe descriptor from ghost-resume when
    /// the test runner's output is a pipe, and its next checkpoint then fails;
    /// that is a restore issue outside write tracking.)
    func testCheckpointChainRestoresEachState() throws {
        try chainScenario(wrapper: [], ghostRun: Paths.ghostRun, ghostResume: Paths.ghostResume, dirMode: 0o700)
    }

    /// The same as an ordinary user (userfaultfd with UFFD_USER_MODE_ONLY needs no privilege).
    func testCheckpointChainAsUnprivilegedUser() throws {
        guard GhostTestCase.isRoot else {
            try chainScenario(wrapper: [], ghostRun: Paths.ghostRun, ghostResume: Paths.ghostResume, dirMode: 0o700)
            return
        }
        let user = "ghosttest"
        if getpwnam(user) == nil {
            let r = try runToCompletion("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", user], timeout: 60)
            XCTAssertEqual(r.status, .exited(0), "useradd \(user): \(r.stderr)")
        }
        guard let pw = getpwnam(user) else { throw HarnessError("user \(user) does not exist and could not be created") }
        let bin = try makeTempDir("inc-bin")
        chmod(bin, 0o755)
        for tool in ["ghost-run", "ghost-resume"] {
            let dst = bin + "/" + tool
            try FileManager.default.copyItem(atPath: Paths.binDir + "/" + tool, toPath: dst)
            chmod(dst, 0o755)
        }
        let wrapper = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--"]
        try chainScenario(wrapper: wrapper, ghostRun: bin + "/ghost-run", ghostResume: bin + "/ghost-resume",
                          dirMode: 0o700, owner: (pw.pointee.pw_uid, pw.pointee.pw_gid))
    }

    /// A 256 MiB MADV_DONTFORK reservation that holds no page is never
    /// armed for write tracking, so no checkpoint reads it: armed ahead of
    /// the freeze, its write-protect markers looked like swapped pages and
    /// the freeze read all of it (a node or Java job was frozen 0.1-0.8 s).
    func testEmptyReservationIsNotRead() throws {
        let exe = try program("dontfork_reserve")
        let dir = try makeTempDir("reserve")
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        for n in 1...3 {
            let line = try checkpoint(run, number: n)
            // "... read 64.1 MiB, ..." (the 64 MiB written at most; the reservation would add 256).
            guard let r = line.range(of: "read "), let end = line[r.upperBound...].range(of: ",") else {
                throw HarnessError("no 'read' figure in '\(line)'")
            }
            let figure = String(line[r.upperBound..<end.lowerBound])
            let parts = figure.split(separator: " ")
            let mib = (Double(parts.first ?? "") ?? .infinity) * (parts.last == "GiB" ? 1024 : parts.last == "MiB" ? 1 : 1.0 / 1024)
            XCTAssertLessThan(mib, 100, "checkpoint \(n) read \(figure): the empty reservation was read\n\(line)")
        }
        try killNode(run, jobPid: pid)
        let resumed = try startGhostResume(dir + "/images", cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        try resumed.write("go\n")
        try resumed.waitFor("ok reserve intact")
        try expectExit(resumed, .exited(0))
    }

    /// Huge sparse reservations (a 2 TiB MAP_NORESERVE shadow with scattered
    /// pages, as AddressSanitizer makes; a 1 TiB PROT_NONE reservation with a
    /// committed piece, as the JVM makes) are not armed for write tracking,
    /// whose markers would fill page tables of 1/512 of their size (the
    /// checkpoint of an ASan program never ended), and are mapped again with
    /// MAP_NORESERVE (the overcommit limit refused 2 TiB at resume).
    func testSparseReservationsAreCheapToCheckpointAndResume() throws {
        let exe = try program("sparse_reserve")
        let dir = try makeTempDir("sparse")
        let run = try startGhostRun(exe, [], imageDir: dir + "/images", cwd: dir)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready")
        // Each checkpoint stores 2000 one-page blocks at once on several
        // threads: ghost-run crashed in malloc most times here while its
        // result slots were a shared Array (Parallel.swift, ResultSlots).
        for n in 1...3 { try checkpoint(run, number: n, timeout: 60) }
        // The job's page tables stay about as they were (16 MiB for its
        // scattered pages), not the 4 GiB that markers over 2 TiB take.
        let pte = ProcInfo.statusFields(pid, "VmPTE:")?.first.flatMap { Int($0) } ?? -1
        XCTAssertTrue(pte >= 0 && pte < 64 * 1024, "the job's page tables grew to \(pte) kB\n\(run.transcript)")
        try killNode(run, jobPid: pid)
        let resumed = try startGhostResume(dir + "/images", cwd: dir)
        _ = try waitResumed(resumed, exe: exe)
        try finishResumed(resumed, timeout: 60)
    }

    private func chainScenario(wrapper: [String], ghostRun: String, ghostResume: String, dirMode: mode_t,
                               owner: (uid_t, gid_t)? = nil) throws {
        let exe = try program("incremental")
        let dir = try makeTempDir("incremental")
        chmod(dir, 0o755)
        let work = dir + "/work"
        mkdir(work, dirMode)
        if let (uid, gid) = owner, chown(work, uid, gid) != 0 {
            throw HarnessError("chown \(work): \(String(cString: strerror(errno)))")
        }
        let images = work + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, ghostArgs: ["--keep", "10"], cwd: work,
                                    wrapper: wrapper, ghostRunPath: ghostRun)
        let pid = try jobPid(of: run, exe: exe)
        var sums: [Int: String] = [:]   // checkpoint -> (generation, sum) it holds
        sums[1] = "gen=0 sum=" + value(try run.waitFor("ready sum=", in: .stdout, timeout: 60), "sum=")
        try checkpoint(run, number: 1)
        try run.write("step\n")
        sums[2] = "gen=1 sum=" + value(try run.waitFor("stepped 1 ", in: .stdout, timeout: 60), "sum=")
        try checkpoint(run, number: 2)
        try run.write("step\n")
        sums[3] = "gen=2 sum=" + value(try run.waitFor("stepped 2 ", in: .stdout, timeout: 60), "sum=")
        try checkpoint(run, number: 3)
        let unchanged = try checkpoint(run, number: 4)
        sums[4] = sums[3]
        // Content dedup alone would also write little: "read" shows that the
        // unchanged memory was not even read (write tracking).
        let wrote = try bytes(unchanged, "wrote "), read = try bytes(unchanged, "read ")
        XCTAssertLessThan(wrote, 16 * 1024, "a checkpoint of a job that changed nothing wrote \(wrote) bytes: \(unchanged)")
        XCTAssertLessThan(read, 64 * 1024, "a checkpoint of a job that changed nothing read \(read) bytes: \(unchanged)")
        try run.write("step\n")
        _ = try run.waitFor("stepped 3 ", in: .stdout, timeout: 60)
        try killNode(run, jobPid: pid)

        for n in [2, 3, 4] {
            let r = try startGhostResume(images, ["--checkpoint", "\(n)"], cwd: work, wrapper: wrapper,
                                         ghostResumePath: ghostResume)
            let (got, _) = try waitResumed(r, exe: exe)
            XCTAssertEqual(got, n)
            try r.write("check\n")
            let line = try r.waitFor(anyOf: ["ok ", "FAIL"], in: .stdout, timeout: 60)
            XCTAssertEqual(line.line, "ok " + sums[n]!, "checkpoint \(n) restored the wrong memory\n\(r.transcript)")
            try r.write("quit\n")
            try expectExit(r, .exited(0))
        }

        // After a resume, tracking starts again: checkpoint (full, deduplicated),
        // step, checkpoint (incremental), and that one must restore generation 2.
        let again = try startGhostResume(images, ["--checkpoint", "2"], cwd: work, wrapper: wrapper,
                                         ghostResumePath: ghostResume)
        let (_, againPid) = try waitResumed(again, exe: exe)
        try checkpoint(again, number: 5)
        try again.write("step\n")
        let s6 = "gen=2 sum=" + value(try again.waitFor("stepped 2 ", in: .stdout, timeout: 60), "sum=")
        XCTAssertEqual(s6, sums[3])
        try checkpoint(again, number: 6)
        try killNode(again, jobPid: againPid)
        let last = try startGhostResume(images, ["--checkpoint", "6"], cwd: work, wrapper: wrapper,
                                        ghostResumePath: ghostResume)
        _ = try waitResumed(last, exe: exe)
        try last.write("check\n")
        let line = try last.waitFor(anyOf: ["ok ", "FAIL"], in: .stdout, timeout: 60)
        XCTAssertEqual(line.line, "ok " + s6, "checkpoint 6 restored the wrong memory\n\(last.transcript)")
        try last.write("quit\n")
        try expectExit(last, .exited(0))
    }

    private func value(_ line: String, _ key: String) -> String {
        guard let r = line.range(of: key) else { return "?" }
        return String(line[r.upperBound...].prefix { !$0.isWhitespace })
    }

    /// Bytes from "KEY N UNIT" of a checkpoint log line.
    private func bytes(_ line: String, _ key: String) throws -> Double {
        let parts = line.components(separatedBy: ", " + key)
        guard parts.count > 1 else { throw HarnessError("no '\(key)' in \(line)") }
        let f = parts[1].split(separator: " ")
        guard f.count >= 2, let v = Double(f[0]) else { throw HarnessError("cannot parse \(line)") }
        let unit: [String: Double] = ["B": 1, "KiB": 1024, "MiB": 1048576, "GiB": 1073741824]
        return v * (unit[String(f[1].filter { $0.isLetter })] ?? .infinity)
    }
}
