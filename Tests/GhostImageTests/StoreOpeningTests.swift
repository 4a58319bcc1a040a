import Foundation
import Glibc
import XCTest
@testable import GhostImage

/// Opening, permissions, ownership, the marker file and the writer lock.
final class StoreOpeningTests: XCTestCase {
    func testCreatedDirectoriesAre0700AndFiles0600() throws {
        let tmp = TempDir()
        let path = tmp.path + "/deep/er/image"
        let oldMask = umask(0o022)
        defer { umask(oldMask) }
        let store = try ImageStore(path: path + "/", create: true)
        XCTAssertEqual(store.path, path)
        try commitCheckpoint(store, payload: "x", chunks: [randomBytes(5000, seed: 1), [0, 0, 0]])
        XCTAssertEqual(fileMode(tmp.path + "/deep"), 0o700)
        XCTAssertEqual(fileMode(path), 0o700)
        let e = FileManager.default.enumerator(atPath: path)!
        var files = 0, dirs = 0
        while let rel = e.nextObject() as? String {
            var st = stat()
            XCTAssertEqual(lstat(path + "/" + rel, &st), 0)
            if st.st_mode & S_IFMT == S_IFDIR {
                XCTAssertEqual(st.st_mode & 0o7777, 0o700, rel)
                dirs += 1
            } else {
                XCTAssertEqual(st.st_mode & 0o7777, 0o600, rel)
                files += 1
            }
        }
        XCTAssertEqual(files, 1 + 1 + 1 + 1)  // marker, lock, checkpoint, one pack holding both chunks
        XCTAssertGreaterThanOrEqual(dirs, 3)
        XCTAssertEqual(String(decoding: readFile(path + "/GHOST-IMAGE").prefix(21), as: UTF8.self),
                       "ghost-image-format 1\n")
    }

    func testDirectoryWritableByOthersIsRefused() throws {
        let tmp = TempDir()
        _ = try ImageStore(path: tmp.image, create: true)
        for mode: mode_t in [0o777, 0o770, 0o702] {
            chmod(tmp.image, mode)
            guard case .unsafePermissions(let path, let reason) = expectImageError({ () throws(ImageError) in
                try ImageStore(path: tmp.image, create: false)
            }) else { return XCTFail("mode \(String(mode, radix: 8)) must be refused") }
            XCTAssertEqual(path, tmp.image)
            XCTAssertTrue(reason.contains(String(mode, radix: 8)), reason)
            guard case .unsafePermissions = expectImageError({ () throws(ImageError) in
                try ImageStore(path: tmp.image, create: true)
            }) else { return XCTFail("create must refuse it too") }
        }
        chmod(tmp.image, 0o750)  // readable by the group is the user's choice
        XCTAssertNoThrow(try ImageStore(path: tmp.image, create: false))
        chmod(tmp.image, 0o700)
        chmod(tmp.image + "/chunks", 0o777)
        guard case .unsafePermissions(let path, _) = expectImageError({ () throws(ImageError) in
            try ImageStore(path: tmp.image, create: false)
        }) else { return XCTFail("a writable chunks directory must be refused") }
        XCTAssertEqual(path, tmp.image + "/chunks")
    }

    func testParentWritableByEveryoneWithoutStickyBitIsRefused() throws {
        let tmp = TempDir()
        chmod(tmp.path, 0o777)
        guard case .unsafePermissions(_, let reason) = expectImageError({ () throws(ImageError) in
            try ImageStore(path: tmp.image, create: true)
        }) else { return XCTFail("expected unsafePermissions") }
        XCTAssertTrue(reason.contains("parent"))
        chmod(tmp.path, 0o1777)  // like /tmp: fine
        XCTAssertNoThrow(try ImageStore(path: tmp.image, create: true))
    }

    func testDirectoryOwnedBySomeoneElseIsRefused() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to give a directory away") }
        let tmp = TempDir()
        _ = try ImageStore(path: tmp.image, create: true)
        XCTAssertEqual(chown(tmp.image, 12345, 12345), 0)
        XCTAssertEqual(expectImageError { () throws(ImageError) in try ImageStore(path: tmp.image, create: false) },
                       .foreignOwner(path: tmp.image, uid: 12345))
    }

    func testMarkerIsRequiredAndItsVersionChecked() throws {
        let tmp = TempDir()
        XCTAssertEqual(expectImageError { () throws(ImageError) in try ImageStore(path: tmp.image, create: false) },
                       .notAnImageDirectory(path: tmp.image))
        // An existing directory with other contents is not taken over.
        mkdir(tmp.image, 0o700)
        writeFile(tmp.image + "/results.dat", [1, 2, 3])
        XCTAssertEqual(expectImageError { () throws(ImageError) in try ImageStore(path: tmp.image, create: false) },
                       .notAnImageDirectory(path: tmp.image))
        XCTAssertEqual(expectImageError { () throws(ImageError) in try ImageStore(path: tmp.image, create: true) },
                       .notAnImageDirectory(path: tmp.image))
        XCTAssertEqual(readFile(tmp.image + "/results.dat"), [1, 2, 3])
        // An existing empty directory is initialised.
        unlink(tmp.image + "/results.dat")
        XCTAssertNoThrow(try ImageStore(path: tmp.image, create: true))
        XCTAssertNoThrow(try ImageStore(path: tmp.image, create: false))
        // A newer format is refused with its version.
        writeFile(tmp.image + "/GHOST-IMAGE", Array("ghost-image-format 2\n".utf8))
        XCTAssertEqual(expectImageError { () throws(ImageError) in try ImageStore(path: tmp.image, create: true) },
                       .unsupportedVersion(path: tmp.image + "/GHOST-IMAGE", found: 2))
        writeFile(tmp.image + "/GHOST-IMAGE", Array("something else".utf8))
        XCTAssertEqual(expectImageError { () throws(ImageError) in try ImageStore(path: tmp.image, create: false) },
                       .notAnImageDirectory(path: tmp.image))
    }

    func testSecondWriterIsLockedOut() throws {
        let tmp = TempDir()
        let first = try ImageStore(path: tmp.image, create: true)
        try first.lockForWriting()
        try first.lockForWriting()  // idempotent
        let second = try ImageStore(path: tmp.image, create: false)
        guard case .locked(let path, let holder) = expectImageError({ () throws(ImageError) in try second.lockForWriting() }) else {
            return XCTFail("expected locked")
        }
        XCTAssertEqual(path, tmp.image)
        XCTAssertEqual(holder, "\(getpid())@\(ImageStore.hostname())")
        guard case .locked = expectImageError({ () throws(ImageError) in try second.beginCheckpoint(zstdLevel: 1) }) else {
            return XCTFail("beginCheckpoint must take the lock")
        }
        guard case .locked = expectImageError({ () throws(ImageError) in try second.prune(keep: 1) }) else {
            return XCTFail("prune must take the lock")
        }
        // Reading needs no lock.
        XCTAssertEqual(second.checkpointNumbers(), [])
        first.close()
        guard case .closed = expectImageError({ () throws(ImageError) in try first.beginCheckpoint(zstdLevel: 1) }) else {
            return XCTFail("a closed store must not write")
        }
        let w = try second.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(try w.commit(manifest: []), 1)
    }

    func testReleasingTheStoreReleasesTheLock() throws {
        let tmp = TempDir()
        do {
            let first = try ImageStore(path: tmp.image, create: true)
            try first.lockForWriting()
        }
        XCTAssertNoThrow(try ImageStore(path: tmp.image, create: false).lockForWriting())
    }

    func testErrorDescriptionsAreOneLineAndNameTheirSubject() {
        let id = ChunkID(hex: "00112233445566778899aabbccddeeff")!
        let errors: [(ImageError, String)] = [
            (.notAnImageDirectory(path: "/x"), "/x"),
            (.unsafePermissions(path: "/x", reason: "mode 0777"), "0777"),
            (.foreignOwner(path: "/x", uid: 7), "uid 7"),
            (.noCheckpoints(path: "/x"), "/x"),
            (.noSuchCheckpoint(path: "/x", number: 4, available: []), "none"),
            (.noIntactCheckpoint(path: "/x", problems: ["checkpoint 3 skipped: y"]), "checkpoint 3"),
            (.damagedManifest(path: "/x/c", reason: "r"), "/x/c"),
            (.damagedChunk(id: id, path: "/x/p", reason: "r"), id.hex),
            (.missingChunk(id: id, path: "/x/p"), "/x/p"),
            (.locked(path: "/x", holder: "12@node"), "12@node"),
            (.io(op: "write", path: "/x/f", errno: ENOSPC), "full"),
            (.unsupportedVersion(path: "/x", found: 9), "9"),
            (.chunkTooLarge(size: 10, limit: 5), "10"),
            (.bufferTooSmall(id: id, needed: 10, available: 5), "10"),
            (.closed(path: "/x"), "/x"),
            (.misuse("m"), "m"),
        ]
        for (error, mention) in errors {
            XCTAssertFalse(error.description.contains("\n"), error.description)
            XCTAssertTrue(error.description.contains(mention), error.description)
        }
    }
}
