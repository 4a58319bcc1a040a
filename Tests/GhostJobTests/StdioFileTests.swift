import Foundation
import Glibc
import XCTest

/// The job's stdin is a file the launcher opened (`< in.txt`), given again to
/// ghost-resume the same way.
final class StdioFileTests: GhostTestCase {
    /// A bash loop reads lines from a file on stdin; it is checkpointed
    /// mid-way, reads on, is killed, and resumed with the same redirection
    /// (ghost-resume's stdin at offset 0 again). The job must read on from
    /// where it was at the checkpoint, not from the start: the resumed run
    /// prints the lines after the checkpoint's, each once, up to the end.
    func testStdinFileIsReadOnFromTheCheckpoint() throws {
        let dir = try makeTempDir("stdio")
        try (1...300).map { "line \($0)\n" }.joined().write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let script = dir + "/job.sh"
        try "while read -r l; do echo \"got $l\"; sleep 0.01; done\necho end\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        func openInput() throws -> Int32 {
            let i = open(dir + "/in.txt", O_RDONLY | O_CLOEXEC)
            guard i >= 0 else { throw HarnessError("open: \(String(cString: strerror(errno)))") }
            return i
        }

        let images = dir + "/images"
        var i = try openInput()
        let run = try startGhostRun("/bin/bash", [script], imageDir: images, cwd: dir, inherit: [0: i])
        close(i)
        let pid = try jobPid(of: run)
        try run.waitFor("got line 60", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try run.waitFor("got line 120", in: .stdout, timeout: 60)   // read on after the checkpoint
        try killNode(run, jobPid: pid)

        i = try openInput()
        let resumed = try startGhostResume(images, cwd: dir, inherit: [0: i])
        close(i)
        try expectExit(resumed, .exited(0))
        let lines = resumed.stdoutText.split(separator: "\n").map(String.init).filter { $0.hasPrefix("got ") || $0 == "end" }
        guard let first = lines.first, let n = Int(first.dropFirst("got line ".count)) else {
            return XCTFail("no output from the resumed job\n\(resumed.transcript)")
        }
        XCTAssertGreaterThan(n, 60, "the resumed job read its input again from the start\n\(resumed.transcript)")
        XCTAssertLessThan(n, 120, "the resumed job skipped input\n\(resumed.transcript)")
        XCTAssertEqual(lines, (n...300).map { "got line \($0)" } + ["end"], resumed.transcript)
    }
}
