// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "ghost",
    products: [
        .executable(name: "ghost-run", targets: ["ghost-run"]),
        .executable(name: "ghost-resume", targets: ["ghost-resume"]),
        .library(name: "GhostJob", targets: ["GhostJob"]),
        .library(name: "GhostImage", targets: ["GhostImage"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries from Debian -dev packages, found through pkg-config.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // What Swift cannot call: variadic ptrace/syscall, fork+exec without the Swift runtime.
        .target(name: "CGhostSys"),
        // libslurm through dlopen (headers from libslurm-dev at build time only).
        .target(name: "CGhostSlurm", linkerSettings: [.linkedLibrary("dl")]),
        // The image: chunk store, compression, atomic commit, records. No ptrace, no /proc.
        .target(name: "GhostImage", dependencies: ["CZstd", "CXXHash"]),
        // The engine: capture and rebuild processes, supervise a job.
        .target(name: "GhostJob", dependencies: ["GhostImage", "CGhostSys", "CGhostSlurm", "CXXHash"]),
        // What both command line tools share: supervision options, main().
        .target(name: "GhostCLI", dependencies: [
            "GhostJob", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ghost-run", dependencies: [
            "GhostCLI", "GhostJob", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ghost-resume", dependencies: [
            "GhostCLI", "GhostJob", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "GhostImageTests", dependencies: ["GhostImage"]),
        .testTarget(name: "GhostJobTests", dependencies: ["GhostJob", "GhostImage"]),
    ]
)
