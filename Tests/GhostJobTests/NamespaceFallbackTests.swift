import Foundation
import XCTest

/// A node where ordinary users may not create user namespaces (issue #3):
/// ghost-run still runs and checkpoints the job without them, and
/// ghost-resume restores it with a new PID and says so. The restriction is
/// real, not simulated: each tool runs in a user namespace whose
/// user.max_user_namespaces is 0, so ghost's own unshare fails there.
final class NamespaceFallbackTests: GhostTestCase {
    private let restricted = ["/usr/bin/unshare", "--user", "--map-root-user", "/bin/sh", "-c",
                              "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\""]

    func testWithoutUserNamespacesTheJobRunsAndResumesWithANewPid() throws {
        let exe = try program("counter")
        let dir = try makeTempDir("nons")
        let images = dir + "/images"
        let run = try startGhostRun(exe, [], imageDir: images, cwd: dir, wrapper: restricted)
        let warned = try run.waitFor("does not let ordinary users create user + PID namespaces", in: .stderr, timeout: 60)
        XCTAssertTrue(warned.contains("PIDs will change"), warned)
        let pid = try jobPid(of: run, exe: exe)
        try run.waitFor("ready", in: .stdout, timeout: 60)
        try checkpoint(run, number: 1)
        try killNode(run, jobPid: pid)

        let resumed = try startGhostResume(images, cwd: dir, wrapper: restricted)
        let line = try resumed.waitFor("ghost: resumed checkpoint 1", in: .stderr, timeout: 60)
        XCTAssertTrue(line.contains("without namespaces PIDs change"), line)
        try finishResumed(resumed, release: "quit", timeout: 60)
    }

    /// An image taken inside namespaces cannot be resumed where they are not
    /// allowed: a clear message, not a broken job.
    func testNamespacedImageOnARestrictedNodeIsRefusedClearly() throws {
        let exe = try program("counter")
        let dir = try makeTempDir("nons2")
        let images = dir + "/images"
        try runCheckpointKill(exe, [], imageDir: images, cwd: dir)
        let r = try runToCompletion(restricted[0], Array(restricted.dropFirst()) + [Paths.ghostResume, images], timeout: 60)
        XCTAssertNotEqual(r.status, .exited(0))
        XCTAssertTrue(r.stderr.contains("namespaces"), r.stderr)
    }
}
