import Foundation
import Glibc
import XCTest
@testable import GhostImage

/// kill -9 of a real writer process at random moments must never leave the
/// image without an intact checkpoint, nor with a listed checkpoint that does
/// not verify. The writer is this test binary itself, run with a filter that
/// selects `testCrashHelperWriterLoop` and an environment variable that arms it.
final class CrashTests: XCTestCase {
    static let helperVariable = "GHOST_IMAGE_CRASH_HELPER_DIR"

    /// The child's side: writes and prunes checkpoints until killed.
    /// In a normal test run the variable is unset and this does nothing.
    func testCrashHelperWriterLoop() throws {
        guard let dir = ProcessInfo.processInfo.environment[Self.helperVariable] else { return }
        let store = try ImageStore(path: dir, create: true)
        // Data is made once: the loop should spend its time in the store, where kills matter.
        let zeros = [UInt8](repeating: 0, count: 256 << 10)
        let shared = randomBytes(256 << 10, seed: 42)
        var fresh = (0..<6).map { randomBytes(256 << 10, seed: UInt64($0)) }
        let bulk = randomBytes(8 << 20, seed: 7)  // makes the checkpoint file big enough to be killed mid-write
        var round = UInt64(getpid()) << 32
        while true {
            round += 1
            let w = try store.beginCheckpoint(zstdLevel: 1)
            for k in fresh.indices {
                withUnsafeBytes(of: round) { for (i, b) in $0.enumerated() { fresh[k][i] = b } }
                _ = try w.put(fresh[k])
            }
            _ = try w.put(zeros)
            _ = try w.put(shared)
            _ = try w.commit(manifest: Array("checkpoint \(w.number)\n".utf8) + bulk)
            try store.prune(keep: 2)
        }
    }

    func testKillMinus9AtRandomMomentsNeverBreaksTheImage() throws {
        let tmp = TempDir()
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var rng = SystemRandomNumberGenerator()
        var killedWhileRunning = 0
        for round in 0..<12 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: exe)
            child.arguments = ["GhostImageTests.CrashTests/testCrashHelperWriterLoop"]
            var env = ProcessInfo.processInfo.environment
            env[Self.helperVariable] = tmp.image
            child.environment = env
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            usleep(UInt32.random(in: 150_000...700_000, using: &rng))
            if child.isRunning { killedWhileRunning += 1 }
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()

            guard fileExists(tmp.image + "/GHOST-IMAGE") else { continue }  // killed before it got going
            let store = try ImageStore(path: tmp.image, create: false)
            let numbers = store.checkpointNumbers()
            print("crash round \(round): checkpoints \(numbers), temp files left: \(tempFiles(under: tmp.image).count)")
            for n in numbers {
                XCTAssertEqual(store.verify(n), [], "round \(round): checkpoint \(n) of \(numbers)")
                XCTAssertEqual(try store.loadManifest(n).prefix { $0 != 10 }, Array("checkpoint \(n)".utf8)[...])
            }
            if let newest = numbers.last {
                let intact = try store.newestIntactCheckpoint()
                XCTAssertEqual(intact.number, newest)
                XCTAssertEqual(intact.skipped, [])
            }
        }
        XCTAssertGreaterThanOrEqual(killedWhileRunning, 10, "the helper process did not stay alive; is the filter right?")
        let store = try ImageStore(path: tmp.image, create: false)
        XCTAssertFalse(store.checkpointNumbers().isEmpty, "the helper never committed a checkpoint")
        // The survivor cleans up after the dead and carries on.
        try store.prune(keep: 2)
        XCTAssertEqual(tempFiles(under: tmp.image), [])
        // Packs of killed writers (and packs compacted away) are gone: every
        // pack left is used by a remaining checkpoint, and is mostly live.
        var used: Set<String> = []
        for n in store.checkpointNumbers() {
            for l in try store.readCheckpoint(n, wantPayload: false).locations where !l.isLoose {
                used.insert((ImageLayout.packPath(l.pack) as NSString).lastPathComponent)
            }
        }
        XCTAssertEqual(packFiles(store), used)
        let next = (store.checkpointNumbers().last ?? 0) + 1
        XCTAssertEqual(try commitCheckpoint(store, payload: "checkpoint \(next)\n", chunks: [[1, 2]]).0, next)
        XCTAssertEqual(store.verify(next), [])
    }
}
