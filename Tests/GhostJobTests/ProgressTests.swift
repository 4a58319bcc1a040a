// Progress of checkpoints and resumes: drawn in place on a terminal, never
// when stderr is a file or pipe, where each checkpoint or resume gives one
// summary line with sizes and times.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ProgressTests: GhostTestCase {
    /// stderr is a pipe: no progress line, no carriage return, exactly one
    /// summary line per checkpoint and per resume, carrying sizes and times.
    /// GHOST_PROGRESS_AFTER=0 would draw at once on a terminal, so any
    /// progress output here would be a bug, not a matter of timing.
    func testNonTerminalGetsOneSummaryLineAndNoProgress() throws {
        let exe = try program("bigmem")
        let dir = try makeTempDir("progress")
        let images = dir + "/images"
        let env = environment(["GHOST_PROGRESS_AFTER": "0"])
        let run = try startGhostRun(exe, ["32", "32"], imageDir: images, cwd: dir, env: env)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready small")
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid)
        let err = run.stderrText
        XCTAssertFalse(err.contains("\r"), "progress drawn on a pipe:\n\(err)")
        XCTAssertFalse(err.contains("ghost: checkpoint 1:"), err)
        let done = err.split(separator: "\n").filter { $0.contains("checkpoint 1 done") }
        XCTAssertEqual(done.count, 1, err)
        XCTAssertTrue(done.first.map { $0.contains("stored 32") && $0.contains("wrote") && $0.contains("total") } ?? false, err)

        let resumed = try startGhostResume(images, cwd: dir, env: env)
        _ = try jobPid(of: resumed, exe: exe)
        try resumed.write("check\n")
        XCTAssertTrue(try resumed.waitFor("ok small", timeout: 60).hasPrefix("ok small"))
        _ = try resumed.waitExit(timeout: 60)
        let rerr = resumed.stderrText
        XCTAssertFalse(rerr.contains("\r"), rerr)
        let summary = rerr.split(separator: "\n").filter { $0.hasPrefix("ghost: restored ") }
        XCTAssertEqual(summary.count, 1, rerr)
        XCTAssertTrue(summary.first.map { $0.contains("32.") && $0.contains("MiB of memory in") } ?? false, rerr)
    }

    /// Under a pseudo-terminal (script(1)) the progress line is drawn and
    /// redrawn in place ("\r", erase to end of line) before the summary.
    func testTerminalShowsProgressInPlace() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else {
            throw XCTSkip("script(1) is not installed")
        }
        let exe = try program("blocked_sleep")
        let dir = try makeTempDir("progress-tty")
        let images = dir + "/images"
        let command = "\(Paths.ghostRun) --image-dir \(images) --checkpoint-interval 1 -- \(exe) sleep 600"
        let env = environment(["GHOST_PROGRESS_AFTER": "0"])
        let run = track(try Child("/usr/bin/script", ["-qfec", command, "/dev/null"], environment: env, cwd: dir))
        let started = try run.waitFor("ghost: started pid ", in: .stdout, timeout: 60)
        let jobPid = started.components(separatedBy: "pid ").last.flatMap { pid_t($0.prefix(while: { $0.isNumber })) }
        if let jobPid { trackPid(jobPid) }
        _ = try run.waitFor("checkpoint 1 done", in: .stdout, timeout: 120)
        let out = run.stdoutText
        guard let draw = out.range(of: "\r\u{1B}[Kghost: checkpoint 1: "),
              let done = out.range(of: "ghost: checkpoint 1 done") else {
            return XCTFail("no progress line on the terminal:\n\(out.debugDescription)")
        }
        XCTAssertLessThan(draw.lowerBound, done.lowerBound, out.debugDescription)
        XCTAssertTrue(out[draw.upperBound...].prefix(40).contains(" of "), out.debugDescription)
        // The line is erased before the summary, which starts a clean line.
        XCTAssertTrue(out[..<done.lowerBound].hasSuffix("\r\u{1B}[K"), out.debugDescription)
        XCTAssertNotNil(jobPid, out.debugDescription)
        if let jobPid { kill(jobPid, SIGKILL) }  // ghost-run ends with its job, then script
        _ = try run.waitExit(timeout: 60)
    }
}
