/// Names a memory chunk by its content: the XXH3-128 hash of the uncompressed
/// bytes, as 32 lowercase hex digits. Equal content, equal id, stored once.
/// Encodes in JSON as a plain string.
public struct ChunkID: Hashable, Codable, Sendable, Comparable, CustomStringConvertible {
    public let hex: String

    /// Accepts 32 hex digits (either case); nil for anything else.
    public init?(hex: String) {
        guard let digest = XXH128Digest(hex: hex) else { return nil }
        self.hex = digest.hex
    }

    /// The id the store gives these bytes.
    public init(hashing bytes: UnsafeRawBufferPointer) {
        self.init(digest: .of(bytes.baseAddress, count: bytes.count))
    }

    init(digest: XXH128Digest) {
        hex = digest.hex
    }

    var digest: XXH128Digest {
        XXH128Digest(hex: hex)!  // hex is validated by every initialiser
    }

    public var description: String { hex }

    public static func < (a: ChunkID, b: ChunkID) -> Bool { a.hex < b.hex }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let id = ChunkID(hex: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "not a chunk id (32 hex digits): \(text)")
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}
