// swift-tools-version:6.0
import PackageDescription

// Data flows one way: script → analysis → bytecode → archive → dist directory →
// loader → mount → import → factory. Each C library is wrapped by exactly one module:
// CArchive only by FrostArchive, CPython only by FrostPython.
let package = Package(
    name: "Frost",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "frost", targets: ["frost"]),
        .executable(name: "frost-stub", targets: ["frost-stub"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // libarchive, linked statically so that a bundle carries only what zip reading
        // needs (Debian's shared libarchive pulls in libxml2 and ICU, about 30 MB).
        // No pkgConfig here: it would add a dynamic -larchive next to the static one.
        .systemLibrary(name: "CArchive"),
        .systemLibrary(
            name: "CPython",
            pkgConfig: "python3-embed",
            providers: [.apt(["python3-dev"])]
        ),
        // One symbol from libarchive's format table (see the file for why).
        .target(name: "CArchiveStatic", dependencies: ["CArchive"]),
        .target(
            name: "FrostArchive",
            dependencies: ["CArchive", "CArchiveStatic"],
            linkerSettings: [
                .linkedLibrary(":libarchive.a"),
                .linkedLibrary("z"), .linkedLibrary("bz2"), .linkedLibrary("lzma"),
                .linkedLibrary("zstd"), .linkedLibrary("nettle"),
            ]
        ),
        .target(name: "FrostPython", dependencies: ["CPython"]),
        .target(name: "FrostBundle"),
        .target(
            name: "FrostRuntime",
            dependencies: ["FrostArchive", "FrostPython", "FrostBundle"]
        ),
        .executableTarget(name: "frost-stub", dependencies: ["FrostRuntime"]),
        .executableTarget(
            name: "frost",
            dependencies: [
                "FrostArchive", "FrostBundle",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "FrostArchiveTests", dependencies: ["FrostArchive"]),
        .testTarget(name: "FrostPythonTests", dependencies: ["FrostPython"]),
        .testTarget(name: "FrostBundleTests", dependencies: ["FrostBundle"]),
        .testTarget(name: "FrostRuntimeTests", dependencies: ["FrostRuntime"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["FrostArchive", "FrostBundle", "frost-stub", "frost"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
