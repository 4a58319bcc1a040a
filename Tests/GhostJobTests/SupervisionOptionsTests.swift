import Foundation
import XCTest

/// ghost-resume takes the same supervision options as ghost-run, so a job
/// resumed by hand is supervised the way it was started.
final class SupervisionOptionsTests: GhostTestCase {
    /// ghost-run --checkpoint-on-term, then ghost-resume --checkpoint-on-term:
    /// each SIGTERM takes a final checkpoint and stops the job with exit 0;
    /// the next resume continues from that checkpoint, step for step.
    func testCheckpointOnTermThroughRunAndResume() throws {
        let exe = try program("counter")
        let dir = try makeTempDir("term")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, ghostArgs: ["--checkpoint-on-term"], cwd: dir)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try run.write("next\n")
        let step1 = try run.waitFor("step 1 value", in: .stdout, timeout: 60)
        run.signal(SIGTERM)
        try run.waitFor("job stopped after checkpoint 1", in: .stderr, timeout: 60)
        try expectExit(run, .exited(0))

        let first = try startGhostResume(images, ["--checkpoint-on-term"], cwd: dir)
        _ = try waitResumed(first, exe: exe)
        try first.write("next\n")
        let step2 = try first.waitFor("step 2 value", in: .stdout, timeout: 60)
        first.signal(SIGTERM)
        try first.waitFor("job stopped after checkpoint 2", in: .stderr, timeout: 60)
        try expectExit(first, .exited(0))

        let second = try startGhostResume(images, cwd: dir)
        let (n, _) = try waitResumed(second, exe: exe)
        XCTAssertEqual(n, 2)
        try second.write("quit\n")
        let final = try second.waitFor("ok final step", in: .stdout, timeout: 60)
        try expectExit(second, .exited(0))

        // The same three steps without ghost.
        let reference = try runToCompletion("/bin/sh", ["-c", "printf 'next\\nnext\\nquit\\n' | \(exe)"], timeout: 60)
        let lines = reference.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains(step1), "step 1 differs: \(step1) vs \(lines)")
        XCTAssertTrue(lines.contains(step2), "step 2 differs: \(step2) vs \(lines)")
        XCTAssertTrue(lines.contains(final), "final differs: \(final) vs \(lines)")
    }

    /// Bad options of ghost-resume are refused before anything happens.
    func testResumeRejectsBadOptions() throws {
        let r = try runToCompletion(Paths.ghostResume, ["--requeue-before-end", "soon", "/nonexistent"], timeout: 30)
        XCTAssertNotEqual(r.status, .exited(0))
        XCTAssertTrue(r.stderr.contains("--requeue-before-end 'soon' is not a duration"), r.stderr)
    }
}
