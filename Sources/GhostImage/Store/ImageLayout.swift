/// Names inside an image directory. See docs/IMAGE-FORMAT.md.
enum ImageLayout {
    static let formatVersion = 1
    static let marker = "GHOST-IMAGE"
    static let lock = "lock"
    /// The job ended by itself (JobEnd, JSON).
    static let ended = "ENDED"
    static let chunks = "chunks"
    static let checkpoints = "checkpoints"
    static let packs = "packs"
    static let packSuffix = ".pack"
    /// Every temporary file starts with this, in the directory of its final name,
    /// so that rename() is atomic and prune can collect leftovers.
    static let tempPrefix = ".tmp-"
    static let checkpointSuffix = ".ckpt"

    /// First line of the marker file; the rest is a note for humans.
    static func markerText(version: Int) -> String {
        "ghost-image-format \(version)\n"
            + "This directory holds checkpoints written by ghost. Do not edit; see docs/IMAGE-FORMAT.md.\n"
    }

    /// The version in a marker file, nil if it is not one.
    static func parseMarker(_ bytes: [UInt8]) -> Int? {
        let firstLine = bytes.prefix { $0 != UInt8(ascii: "\n") }
        let text = String(decoding: firstLine, as: UTF8.self)
        let prefix = "ghost-image-format "
        guard text.hasPrefix(prefix) else { return nil }
        return Int(text.dropFirst(prefix.count))
    }

    /// "chunks/ab/ab12…" — two hex digits of fan-out keep directories small.
    static func chunkPath(_ id: ChunkID) -> String {
        "\(chunks)/\(fanout(id))/\(id.hex)"
    }

    static func fanout(_ id: ChunkID) -> String {
        String(id.hex.prefix(2))
    }

    /// "packs/000000000007.pack" — twelve digits so names sort like numbers.
    static func packPath(_ number: UInt64) -> String {
        let digits = String(number)
        return "\(packs)/" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits + packSuffix
    }

    /// The number a pack file name stands for; nil for anything else.
    static func packNumber(fileName name: String) -> UInt64? {
        guard name.hasSuffix(packSuffix) else { return nil }
        let digits = name.dropLast(packSuffix.count)
        guard digits.count >= 12, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let n = UInt64(digits), n > 0 else { return nil }
        return n
    }

    /// "checkpoints/000042.ckpt" — at least six digits so names sort like numbers.
    static func checkpointName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 6 - digits.count)) + digits + checkpointSuffix
    }

    static func checkpointPath(_ number: Int) -> String {
        "\(checkpoints)/\(checkpointName(number))"
    }

    /// The number a checkpoint file name stands for; nil for anything else (temp files included).
    static func checkpointNumber(fileName name: String) -> Int? {
        guard name.hasSuffix(checkpointSuffix) else { return nil }
        let digits = name.dropLast(checkpointSuffix.count)
        guard digits.count >= 6, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let n = Int(digits), n > 0 else { return nil }
        return n
    }
}
