import FoundationEssentials

extension Manifest {
    /// JSON bytes of the manifest (keys sorted, so equal manifests give equal
    /// bytes; "/" in paths and block tables left as it is).
    public func encoded() throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try enc.encode(self))
    }

    /// Decodes a manifest payload; refuses a format version this build does not know.
    public static func decode(_ bytes: [UInt8]) throws -> Manifest {
        struct Version: Decodable { var formatVersion: Int }
        let v = try JSONDecoder().decode(Version.self, from: Data(bytes))
        guard Manifest.readableVersions.contains(v.formatVersion) else {
            throw ManifestVersionError(found: v.formatVersion)
        }
        return try JSONDecoder().decode(Manifest.self, from: Data(bytes))
    }
}

public struct ManifestVersionError: Error, CustomStringConvertible {
    public let found: Int
    public var description: String {
        "the checkpoint was written in manifest format \(found); this ghost reads formats \(Manifest.readableVersions.lowerBound) to \(Manifest.readableVersions.upperBound)"
    }
}
