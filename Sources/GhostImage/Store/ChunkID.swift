/// Names a memory chunk by its content: the XXH3-128 hash of the uncompressed
/// bytes, as 32 lowercase hex digits. Equal content, equal id, stored once.
/// Encodes in JSON as a plain string.
public struct ChunkID: Hashable, Codable, Sendable, Comparable, CustomStringConvertible {
    /// Held as the two 64-bit halves, not as text: chunk ids are the keys of
    /// the store's big tables, where hashing and comparing 32-character
    /// strings was most of an unchanged incremental checkpoint's CPU time.
    let digest: XXH128Digest

    /// Accepts 32 hex digits (either case); nil for anything else.
    public init?(hex: String) {
        guard let digest = XXH128Digest(hex: hex) else { return nil }
        self.digest = digest
    }

    /// The id the store gives these bytes.
    public init(hashing bytes: UnsafeRawBufferPointer) {
        self.init(digest: .of(bytes.baseAddress, count: bytes.count))
    }

    init(digest: XXH128Digest) {
        self.digest = digest
    }

    /// 32 lowercase hex digits (the chunk's file name and its JSON form).
    public var hex: String { digest.hex }

    public var description: String { hex }

    /// The order of the hex text.
    public static func < (a: ChunkID, b: ChunkID) -> Bool {
        (a.digest.high, a.digest.low) < (b.digest.high, b.digest.low)
    }

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
