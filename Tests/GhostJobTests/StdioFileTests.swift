import Foundation
import Glibc
import XCTest

/// The job's stdin and stdout are files the launcher opened (`< in.txt`,
/// `>> out.txt`), given again to ghost-resume the same way.
final class StdioFileTests: GhostTestCase {
    /// A bash loop reads lines from a file on stdin and appends to a file on
    /// stdout; it is checkpointed mid-way, runs on, is killed, and resumed
    /// with the same redirections (ghost-resume's stdin at offset 0 again).
    /// The job must read on from where it was at the checkpoint, and the
    /// output written after the checkpoint must not stay twice: out.txt ends
    /// up exactly as after an uninterrupted run.
    func testStdinFileAndAppendedStdoutFile() throws {
        let dir = try makeTempDir("stdio")
        let input = (1...300).map { "line \($0)\n" }.joined()
        try input.write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let script = dir + "/job.sh"
        try "while read -r l; do echo \"got $l\"; sleep 0.01; done\necho end\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        let out = dir + "/out.txt"
        try "before the job\n".write(toFile: out, atomically: true, encoding: .utf8)
        func lines() -> Int { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").count }
        func openStdio() throws -> (Int32, Int32) {
            let i = open(dir + "/in.txt", O_RDONLY | O_CLOEXEC), o = open(out, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard i >= 0, o >= 0 else { throw HarnessError("open: \(String(cString: strerror(errno)))") }
            return (i, o)
        }
        func waitLines(_ n: Int) throws {
            let deadline = Date().addingTimeInterval(60)
            while lines() < n {
                if Date() > deadline { throw HarnessError("out.txt has \(lines()) lines, waited for \(n)") }
                usleep(10_000)
            }
        }

        let images = dir + "/images"
        var (i, o) = try openStdio()
        let run = try startGhostRun("/bin/bash", [script], imageDir: images, cwd: dir, inherit: [0: i, 1: o])
        close(i); close(o)
        let pid = try jobPid(of: run)
        try waitLines(60)
        try checkpoint(run, number: 1)
        try waitLines(lines() + 40)     // more read and written after the checkpoint
        try killNode(run, jobPid: pid)

        (i, o) = try openStdio()
        let resumed = try startGhostResume(images, cwd: dir, inherit: [0: i, 1: o])
        close(i); close(o)
        try expectExit(resumed, .exited(0))
        let expected = "before the job\n" + (1...300).map { "got line \($0)\n" }.joined() + "end\n"
        let got = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertEqual(got, expected, "out.txt differs from an uninterrupted run's\n\(resumed.transcript)")
        XCTAssertTrue(resumed.stderrText.contains("bytes written after the checkpoint from \(out)"), resumed.transcript)
    }
}
