import Foundation
import GhostImage
import XCTest

/// Freezing a process tree that changes all the time: a bash loop that
/// forks and execs /bin/true hundreds of times a second.
final class TreeChurnTests: GhostTestCase {
    /// Eight checkpoints in a row succeed; each manifest lists every PID once
    /// and every process's parent; after kill -9 and resume the loop goes on
    /// from where the last checkpoint was and the script finishes.
    func testCheckpointsOfAFastChangingTree() throws {
        let script = Paths.programsDir + "/churn.sh"
        let n = 15000
        let dir = try makeTempDir("churn")
        let images = dir + "/images"
        let run = try startGhostRun("/bin/bash", [script, String(n)], imageDir: images, cwd: dir)
        let pid = try jobPid(of: run)
        try run.waitFor("progress 500", in: .stdout, timeout: 120)
        var sawChild = false
        for k in 1...8 {
            try checkpoint(run, number: k)
            let store = try ImageStore(path: images, create: false)
            let m = try Manifest.decode(try store.loadManifest(k))
            store.close()
            let pids = m.processes.map(\.pid)
            XCTAssertEqual(Set(pids).count, pids.count, "checkpoint \(k) lists a PID twice: \(pids)")
            for p in m.processes {
                XCTAssertTrue(p.ppid == 1 || pids.contains(p.ppid),
                              "checkpoint \(k): parent \(p.ppid) of process \(p.pid) is missing (\(pids))")
                if p.zombieStatus == nil { XCTAssertFalse(p.threads.isEmpty, "checkpoint \(k): live process \(p.pid) without threads") }
            }
            sawChild = sawChild || pids.count > 1
        }
        XCTAssertFalse(run.stdoutText.contains("ok churn"), "the script ended before it was killed: raise n")
        try killNode(run, jobPid: pid)
        if !sawChild { print("note: no checkpoint caught a child of the loop") }

        let resumed = try startGhostResume(images, cwd: dir)
        let (c, _) = try waitResumed(resumed)
        XCTAssertEqual(c, 8)
        try resumed.waitFor("ok churn \(n)", in: .stdout, timeout: 300)
        try expectExit(resumed, .exited(0), timeout: 60)
        // The resumed loop counts on from the checkpoint: consecutive progress lines up to n.
        let progress = resumed.stdoutText.split(separator: "\n").compactMap { line -> Int? in
            line.hasPrefix("progress ") ? Int(line.dropFirst(9)) : nil
        }
        XCTAssertEqual(progress.last, n, resumed.transcript)
        if let first = progress.first {
            XCTAssertEqual(progress, Array(stride(from: first, through: n, by: 500)), resumed.transcript)
        }
    }
}
