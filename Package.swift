// swift-tools-version:6.0
import PackageDescription

/// The bench C programs: -Wall clean, optimized in release builds.
let benchC: [CSetting] = [.unsafeFlags(["-Wall", "-Wextra"])]
/// SwiftPM links even C executables against libswiftCore.so, whose toolchain
/// directory (/opt/swift) is a forwarded path under wrap-and-run, where the
/// loader's mmap of it fails (ENODEV): link the runtime statically instead.
let benchLink: [LinkerSetting] = [.unsafeFlags(["-static-stdlib"])]

let package = Package(
    name: "Tether",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "homestub", targets: ["homestub"]),
        .executable(name: "wrap-and-run", targets: ["wrap-and-run"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.12.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        // The policy file's TOML (issue 11): toml++ underneath, so positions
        // of syntax errors come with line and column.
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        // --stats latency percentiles: HdrHistogram records without allocating.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // The only C: variadic syscalls, seccomp notification ioctls, the
        // async-signal-safe spawn, libseccomp filter building, libelf checks.
        .target(
            name: "CShim",
            path: "CShim",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("seccomp"), .linkedLibrary("elf")]
        ),
        // The only Swift layer that calls libc or CShim.
        .target(
            name: "SysKit",
            dependencies: ["CShim", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // The frame AEAD: BoringSSL's EVP_AEAD, from swift-crypto's copy
        // (see CAead.h). Its Swift API allocates and sets the key up again
        // for every frame; a kept context seals in place (forward-bench,
        // sealing, shows both).
        .target(
            name: "CAead",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            path: "CAead"
        ),
        // The wire protocol: frames, ops, handshake, auth, sealing. No I/O.
        .target(
            name: "Wire",
            dependencies: ["CAead", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Binding rules: which paths are forwarded. No I/O.
        .target(name: "Policy"),
        // The policy file (TOML) read into Policy's rules, with positions for
        // its errors.
        .target(name: "PolicyFile", dependencies: ["Policy", .product(name: "TOMLKit", package: "TOMLKit")]),
        // Target side: interception, syscall table, placeholders, forwarding client.
        .target(
            name: "Supervisor",
            dependencies: ["SysKit", "Wire", "Policy", .product(name: "Logging", package: "swift-log"),
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Histogram", package: "hdrhistogram-swift")]
        ),
        // Home side: listener, deputy, request execution inside the export root.
        .target(
            name: "HomeNode",
            dependencies: ["SysKit", "Wire", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "homestub",
            dependencies: [
                "HomeNode", "SysKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "wrap-and-run",
            dependencies: [
                "Supervisor", "HomeNode", "SysKit", "Policy", "PolicyFile",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Benchmarks (issues 3 and 9): `make bench`. The C programs are
        // standalone: the workload that runs natively or traced, and the
        // floors (polled as Tether waits, or blocking for reference).
        .executableTarget(
            name: "forward-bench",
            dependencies: ["Wire", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Crypto", package: "swift-crypto")],
            path: "bench/forward-bench"
        ),
        .target(name: "BenchSupport", path: "bench/bench-support", cSettings: benchC),
        .executableTarget(name: "bench-workload", dependencies: ["BenchSupport"], path: "bench/bench-workload",
                          cSettings: benchC, linkerSettings: benchLink),
        .executableTarget(name: "bench-floor-notify", dependencies: ["BenchSupport"], path: "bench/bench-floor-notify",
                          cSettings: benchC, linkerSettings: benchLink),
        .executableTarget(name: "bench-floor-transport", dependencies: ["BenchSupport"], path: "bench/bench-floor-transport",
                          cSettings: benchC, linkerSettings: benchLink),
        .executableTarget(name: "bench-floor-forwarder", dependencies: ["BenchSupport"], path: "bench/bench-floor-forwarder",
                          cSettings: benchC, linkerSettings: benchLink),
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy", "PolicyFile"]),
        .testTarget(name: "SysKitTests", dependencies: ["SysKit", "CShim"]),
        .testTarget(name: "HomeNodeTests", dependencies: ["HomeNode", "SysKit", "Wire"]),
    ]
)

// libFuzzer targets over the Wire decoders (issue 8): `make fuzz-quick`, `make fuzz`.
// Opt-in with TETHER_FUZZ=1 (the make targets set it, and build them in
// .build-fuzz with -sanitize=fuzzer,address): libFuzzer's driver runs them,
// so they link only with -sanitize=fuzzer and an ordinary `swift build` must
// not see them.
let fuzzTargets = ["fuzz-frame-header", "fuzz-request", "fuzz-response", "fuzz-handshake", "fuzz-sealed"]
if Context.environment["TETHER_FUZZ"] == "1" {
    package.targets.append(.target(name: "CFuzzDriver", path: "fuzz/CFuzzDriver"))
    package.targets.append(.target(name: "FuzzSupport", dependencies: ["Wire", "CFuzzDriver"], path: "fuzz/FuzzSupport"))
    for name in fuzzTargets {
        package.targets.append(.executableTarget(
            name: name,
            dependencies: ["Wire", "FuzzSupport", "CFuzzDriver", .product(name: "Crypto", package: "swift-crypto")],
            path: "fuzz/\(name)"))
    }
}
