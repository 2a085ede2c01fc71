// swift-tools-version:6.0
import Foundation
import PackageDescription

// The loader links only these modules; they do without Swift's implicitly imported
// regex and concurrency modules, which keeps about 3 MB out of every bundle. Release
// builds leave out the run-time exclusivity checks (about 2% of a request's time in the
// profile); debug builds, which the tests also run, keep them.
let loaderModuleSettings: [SwiftSetting] = [
    .unsafeFlags(["-Xfrontend", "-disable-implicit-string-processing-module-import",
                  "-Xfrontend", "-disable-implicit-concurrency-module-import"]),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
    // swiftc keeps every public symbol on ELF for clients outside the link; the loader is
    // one link with no outside clients, so --gc-sections may drop what it never calls,
    // function by function (the packager's zip and tar writers, for one).
    .unsafeFlags(["-Xfrontend", "-internalize-at-link", "-Xfrontend", "-function-sections"],
                 .when(configuration: .release)),
]

// The Swift runtime the loader links: Scripts/setup.sh makes copies of the toolchain's
// static archives whose public code --gc-sections may drop (Scripts/strippable-archive.py);
// without them the toolchain's own are linked, whole, and LoaderSizeTests says so.
let strippableRuntime = "\(Context.packageDirectory)/.build-static-swift"
let strippableRuntimeFlags = FileManager.default.fileExists(atPath: "\(strippableRuntime)/linux/libswiftCore.a")
    ? ["-resource-dir", strippableRuntime] : []

// Data flows one way: script → analysis → bytecode → archive → dist directory →
// loader → mount → import → factory. Each C library is wrapped by exactly one module:
// CArchive and CDeflate only by FrostArchive, CPython only by FrostPython.
let package = Package(
    name: "Frost",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "frost", targets: ["frost"]),
        .executable(name: "frost-stub", targets: ["frost-stub"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // libarchive, linked statically so that a bundle carries only what zip reading
        // needs (Debian's shared libarchive pulls in libxml2 and ICU, about 30 MB).
        // No pkgConfig here: it would add a dynamic -larchive next to the static one.
        .systemLibrary(name: "CArchive"),
        // The CPython C API, called through a libpython loaded at run time (the bundle's,
        // of whichever supported version it was built with): no libpython is linked.
        .target(name: "CPython", linkerSettings: [.linkedLibrary("dl")]),
        // prctl for the process supervisor (Glibc's module does not export it).
        .systemLibrary(name: "CProcess"),
        // One symbol from libarchive's format table (see the file for why).
        .target(name: "CArchiveStatic", dependencies: ["CArchive"]),
        // libdeflate, linked statically: the loader inflates archive entries with it, whole
        // buffers at a time (faster than a stream through libarchive, which then stays out
        // of the loader).
        .systemLibrary(name: "CDeflate"),
        .target(
            name: "FrostArchive",
            dependencies: ["CArchive", "CArchiveStatic", "CDeflate", "FrostSystem"],
            swiftSettings: loaderModuleSettings,
            // The codecs libarchive references are linked statically too: only the
            // referenced parts come along, in the packager (zlib stays shared: CPython's
            // zlib module needs it anyway).
            linkerSettings: [
                .linkedLibrary(":libarchive.a"),
                .linkedLibrary(":libzstd.a"), .linkedLibrary(":liblzma.a"), .linkedLibrary(":libbz2.a"),
                .linkedLibrary(":libnettle.a"), .linkedLibrary(":libdeflate.a"), .linkedLibrary("z"),
            ]
        ),
        // The system layer: every Glibc helper more than one module needs (clocks, the
        // monitor, writing to descriptors, listen addresses). Foundation-free.
        .target(name: "FrostSystem", swiftSettings: loaderModuleSettings),
        .target(name: "FrostPython", dependencies: ["CPython", "FrostSystem"], swiftSettings: loaderModuleSettings),
        // nettle's SHA-256 (linked with libarchive, which needs it; the loader hashes its
        // archives at start).
        .systemLibrary(name: "CNettle", path: "Sources/CNettle"),
        .target(name: "FrostBundle", dependencies: ["FrostSystem", "FrostArchive", "CNettle"], swiftSettings: loaderModuleSettings),
        .target(
            name: "FrostRuntime",
            dependencies: ["FrostSystem", "FrostArchive", "FrostPython", "FrostBundle"],
            swiftSettings: loaderModuleSettings
        ),
        // The HTTP layer: SwiftNIO, requests in and responses out; no ISAPI, no Python.
        .target(
            name: "FrostHTTP",
            dependencies: [
                "FrostSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: loaderModuleSettings
        ),
        // The ISAPI host: the Python extension behind the HTTP layer, on Python threads.
        .target(
            name: "FrostServer",
            dependencies: [
                "FrostHTTP",
                "FrostSystem", "FrostPython", "FrostRuntime", "FrostBundle",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: loaderModuleSettings
        ),
        // The master process: listening sockets, worker processes, signals, systemd. No
        // Python, no NIO: it only spawns and watches loaders in worker mode.
        .target(name: "FrostSupervisor", dependencies: ["CProcess", "FrostSystem"], swiftSettings: loaderModuleSettings),
        // The loader, linked for size (Documentation/LOADER-SIZE.md has the measurements):
        // - Swift's runtime linked in, from the strippable copies above when set up;
        // - libstdc++ linked in too: Scripts/setup.sh puts a link to gcc's libstdc++.a alone
        //   in .build-static-cxx, searched first, so the driver's own -lstdc++ finds the
        //   archive (2.1 MiB less in every bundle's lib/ for 80 KB here; without the link the
        //   shared one is used, and LoaderSizeTests says so);
        // - lld, for --gc-sections with the strippable runtime, packed relative relocations
        //   (DT_RELR, glibc 2.36: 0.9 MB of .rela.dyn becomes 7 KB) and a script that leaves
        //   out the unwind tables nothing in the loader uses (the script says why);
        // - no dynamic exports, and an RPATH (not RUNPATH, so that it also applies to the
        //   dependencies of extension modules Python dlopens) to the bundle's lib/, where
        //   libpython and every needed shared library are copied.
        .executableTarget(
            name: "frost-stub",
            dependencies: ["FrostSystem", "FrostHTTP", "FrostServer", "FrostSupervisor", "FrostRuntime", "FrostBundle", "FrostPython"],
            exclude: ["discard-unwind-tables.ld"],
            swiftSettings: loaderModuleSettings,
            linkerSettings: [
                .unsafeFlags(strippableRuntimeFlags + [
                    "-static-stdlib", "-L\(Context.packageDirectory)/.build-static-cxx",
                    "-use-ld=lld", "-Xlinker", "--gc-sections", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                    "-Xlinker", "--script=\(Context.packageDirectory)/Sources/frost-stub/discard-unwind-tables.ld",
                    "-Xlinker", "--no-eh-frame-hdr",
                    "-Xlinker", "--no-export-dynamic", "-Xlinker", "--disable-new-dtags",
                    "-Xlinker", "-rpath", "-Xlinker", "$ORIGIN/lib",
                ]),
            ]
        ),
        // The isapi package's sources, shipped with the packager as a resource.
        .target(
            name: "IsapiPackage",
            path: "Python",
            exclude: ["tests"],
            sources: ["IsapiPackage.swift"],
            resources: [.copy("isapi")]
        ),
        .target(
            name: "FrostFreeze",
            dependencies: [
                "FrostSystem", "FrostArchive", "FrostBundle", "IsapiPackage",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            resources: [.copy("Resources/hooks.json"), .copy("Resources/analyse.py"), .copy("Resources/trace.py")]
        ),
        .executableTarget(
            name: "frost",
            dependencies: [
                "FrostSystem", "FrostArchive", "FrostBundle", "FrostFreeze",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What several test targets share (the fuzzers' seeded generator); no product uses it.
        .target(name: "FrostTestSupport", path: "Tests/FrostTestSupport"),
        .testTarget(name: "FrostArchiveTests", dependencies: ["FrostArchive", "FrostTestSupport"]),
        .testTarget(name: "FrostPythonTests", dependencies: ["FrostPython"]),
        .testTarget(name: "FrostBundleTests", dependencies: ["FrostBundle", "FrostArchive", "FrostSystem", "FrostTestSupport"]),
        .testTarget(name: "FrostRuntimeTests", dependencies: ["FrostRuntime"]),
        .testTarget(name: "FrostFreezeTests", dependencies: ["FrostFreeze", "FrostBundle", "FrostArchive", "FrostTestSupport"]),
        .testTarget(name: "FrostHTTPTests", dependencies: [
            "FrostHTTP", "FrostTestSupport", .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "FrostServerTests", dependencies: ["FrostServer"]),
        .testTarget(name: "FrostSystemTests", dependencies: ["FrostSystem"]),
        .testTarget(name: "FrostSupervisorTests", dependencies: ["FrostSupervisor", "FrostSystem"]),
        .testTarget(
            name: "EndToEndTests",
            // frost-stub is not a dependency (its static-stdlib link flags would apply to
            // the test bundle); `swift build` builds it, and the tests find it beside themselves.
            dependencies: ["FrostSystem", "FrostArchive", "FrostBundle", "FrostFreeze", "frost", "FrostTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
