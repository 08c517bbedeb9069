// swift-tools-version:6.0
// csgd-dist: Centripetal SGD, data-parallel over MPI, on OpenBLAS.
//
// Dependency direction (never the other way); every target declares each module it imports:
//   CSGDCore ← CSGDKernels ← CSGDModels ← CSGDCentripetal
//   CSGDCore ← CSGDData,  CSGDCore ← CSGDDistributed
//   CSGDCore, CSGDModels, CSGDData, CSGDCentripetal ← CSGDConfig (run config, key table, modes)
//   CSGDCore ← CSGDTensorBoard (TensorBoard event files: TFRecord framing, CRC32C, events)
//   CSGDCore, CSGDModels, CSGDCentripetal, CSGDConfig, CSGDDistributed, CSGDTensorBoard ←
//     CSGDRunFiles (what a run folder holds: checkpoints, metrics/steps records and their
//     TensorBoard copy, the run log, the folder's lock) ← CSGDReport
//   CSGDCore, CSGDData, CSGDModels, CSGDConfig ← CSGDRunData (the splits a config names)
//   all of the above ← CSGDTraining (jobs, the step runner, the training loop)
//   CSGDTraining ← CSGDBench (kernel, step, loader benchmarks)
//   CSGDONNX (the generated ONNX protobuf messages)
//   CSGDCore, CSGDModels, CSGDONNX ← CSGDExport (model file → ONNX)
//   CSGDCore, CSGDModels, CSGDRunFiles, CSGDONNX ← CSGDImport (ONNX or a torchvision
//     state_dict → model file)
// SwiftProtobuf is used by CSGDONNX, CSGDExport, CSGDImport and CSGDTensorBoard only, from
// generated code (launch/gen-proto.sh).
//   all of the above ← CSGDDistCLI (the `csgd-dist` executable)
//   CSGDBuildInfo (C: what the build targeted) ← CSGDBench
// Only CSGDKernels imports CBLAS, only CSGDDistributed imports CMPI, only CSGDData imports CZlib
// and CTurboJPEG.
import PackageDescription

// Release builds are plain -O in every target: bounds, overflow and precondition checks stay
// on, so a missed validation traps instead of corrupting memory. -Ounchecked was measured per
// target (docs/performance.md, "-O vs -Ounchecked per target") and no target gained beyond the
// noise except CSGDData's loader (~7 % CPU), which parses files and so keeps its checks.
// To opt a target back in after a new measurement, give it
// `swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]`.
//
// Target CPU (docs/performance.md, "Built for the host CPU"). Release builds compile every
// target for one CPU, named by the environment variable CSGD_TARGET_CPU:
//   unset or `native`  the CPU of the machine that builds (AVX2/AVX-512, FMA where it has them);
//   an LLVM CPU name   e.g. haswell, skylake-avx512, znver3, znver4: one binary for a
//                      heterogeneous cluster, built for its oldest node's CPU;
//   `generic`/`none`   no target flag: baseline x86-64 (SSE2, no FMA), runs on any x86-64.
// Swift targets get `-target-cpu`; the C target CSGDBuildInfo gets the same CPU as `-march`
// (`-mcpu` off x86) plus the name as a string define, so the binary records what it was built
// for and which vector features that enabled (Swift has no compile-time feature test and
// `-D` in Swift only makes boolean conditions, so the record lives in C). Debug builds set no
// CPU. SwiftPM re-evaluates this manifest when the variable changes; a separate
// `--scratch-path` per CPU keeps two builds side by side.
let targetCPU: String? = {
    let v = Context.environment["CSGD_TARGET_CPU"] ?? "native"
    return ["", "generic", "none"].contains(v) ? nil : v
}()
let release = BuildSettingCondition.when(configuration: .release)
let cpuSwiftSettings: [SwiftSetting] =
    targetCPU.map { [.unsafeFlags(["-target-cpu", $0], release)] } ?? []
#if arch(x86_64) || arch(i386)
    let cpuCFlag = "-march="
#else
    let cpuCFlag = "-mcpu="
#endif
let buildInfoCSettings: [CSetting] =
    [
        .define("CSGD_TARGET_CPU", to: "\"\(targetCPU ?? "generic")\"", release),
        .define("CSGD_TARGET_CPU", to: "\"generic (debug build)\"", .when(configuration: .debug)),
    ] + (targetCPU.map { [.unsafeFlags([cpuCFlag + $0], release)] } ?? [])

let package = Package(
    name: "csgd-dist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "csgd-dist", targets: ["CSGDDistCLI"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // Runtime only: onnx.pb.swift and event.pb.swift are generated once and committed
        // (launch/gen-proto.sh).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"])]),
        .target(name: "CSGDBuildInfo", cSettings: buildInfoCSettings),
        .target(name: "CSGDSignals"),
        .target(name: "CSGDCore"),
        .target(name: "CSGDKernels", dependencies: ["CSGDCore", "CBLAS"]),
        .target(
            name: "CSGDModels", dependencies: ["CSGDCore", "CSGDKernels"]),
        .target(
            name: "CSGDData", dependencies: ["CSGDCore", "CZlib", "CTurboJPEG"]),
        .target(
            name: "CSGDCentripetal", dependencies: ["CSGDCore", "CSGDModels"]),
        .target(name: "CSGDDistributed", dependencies: ["CSGDCore", "CMPI"]),
        .target(
            name: "CSGDConfig",
            dependencies: [
                "CSGDCore", "CSGDModels", "CSGDData", "CSGDCentripetal",
                .product(name: "Yams", package: "Yams"),
            ]),
        .target(
            name: "CSGDTensorBoard",
            dependencies: [
                "CSGDCore", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["event.proto"]),
        .target(
            name: "CSGDRunFiles",
            dependencies: [
                "CSGDCore", "CSGDModels", "CSGDCentripetal", "CSGDConfig", "CSGDDistributed",
                "CSGDTensorBoard",
            ]),
        .target(
            name: "CSGDRunData",
            dependencies: ["CSGDCore", "CSGDData", "CSGDModels", "CSGDConfig"]),
        .target(
            name: "CSGDTraining",
            dependencies: [
                "CSGDCore", "CSGDKernels", "CSGDModels", "CSGDData", "CSGDCentripetal",
                "CSGDDistributed", "CSGDConfig", "CSGDRunFiles", "CSGDRunData", "CSGDSignals",
            ]),
        .target(
            name: "CSGDBench",
            dependencies: [
                "CSGDCore", "CSGDKernels", "CSGDModels", "CSGDData", "CSGDCentripetal",
                "CSGDDistributed", "CSGDConfig", "CSGDTraining", "CSGDBuildInfo",
            ]),
        .target(
            name: "CSGDReport",
            dependencies: [
                "CSGDCore", "CSGDModels", "CSGDCentripetal", "CSGDConfig", "CSGDRunFiles",
            ]),
        .target(
            name: "CSGDONNX",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["onnx.proto"]),
        .target(
            name: "CSGDExport",
            dependencies: [
                "CSGDCore", "CSGDModels", "CSGDONNX",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .target(
            name: "CSGDImport",
            dependencies: [
                "CSGDCore", "CSGDKernels", "CSGDModels", "CSGDONNX",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .executableTarget(
            name: "CSGDDistCLI",
            dependencies: [
                "CSGDCore", "CSGDKernels", "CSGDData", "CSGDCentripetal", "CSGDDistributed",
                "CSGDConfig", "CSGDRunFiles", "CSGDTraining", "CSGDBench", "CSGDReport",
                "CSGDExport", "CSGDImport", "CSGDModels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Helpers shared by the test targets (not part of the product).
        .target(
            name: "CSGDTestSupport", dependencies: ["CSGDCore"], path: "Tests/CSGDTestSupport"),
        .target(
            name: "CSGDTestGraphs", dependencies: ["CSGDModels"], path: "Tests/CSGDTestGraphs"),
        .testTarget(name: "CSGDCoreTests", dependencies: ["CSGDCore", "CSGDTestSupport"]),
        .testTarget(name: "CSGDKernelsTests", dependencies: ["CSGDCore", "CSGDKernels"]),
        .testTarget(
            name: "CSGDModelsTests",
            dependencies: [
                "CSGDCore", "CSGDKernels", "CSGDModels", "CSGDTestSupport", "CSGDTestGraphs",
            ]),
        .testTarget(
            name: "CSGDDataTests",
            dependencies: ["CSGDCore", "CSGDData", "CZlib", "CSGDTestSupport"]
        ),
        .testTarget(
            name: "CSGDCentripetalTests",
            dependencies: [
                "CSGDCore", "CSGDModels", "CSGDCentripetal", "CSGDData", "CSGDTestGraphs",
            ]),
        .testTarget(name: "CSGDDistributedTests", dependencies: ["CSGDCore", "CSGDDistributed"]),
        .testTarget(
            name: "CSGDTrainingTests",
            dependencies: [
                "CSGDCore", "CSGDModels", "CSGDData", "CSGDCentripetal", "CSGDDistributed",
                "CSGDConfig", "CSGDRunFiles", "CSGDRunData", "CSGDTraining", "CSGDTestSupport",
            ]),
        .testTarget(name: "CSGDBenchTests", dependencies: ["CSGDBench"]),
        .testTarget(
            name: "CSGDReportTests",
            dependencies: [
                "CSGDCore", "CSGDConfig", "CSGDDistributed", "CSGDRunFiles", "CSGDTraining",
                "CSGDReport", "CSGDTestSupport",
            ]),
        .testTarget(
            name: "CSGDExportTests",
            dependencies: [
                "CSGDCore", "CSGDExport", "CSGDModels", "CSGDONNX",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .testTarget(
            name: "CSGDTensorBoardTests",
            dependencies: [
                "CSGDCore", "CSGDDistributed", "CSGDRunFiles", "CSGDTensorBoard", "CSGDTestSupport",
            ]),
        .testTarget(
            name: "CSGDImportTests",
            dependencies: [
                "CSGDCore", "CSGDData", "CSGDModels", "CSGDRunFiles", "CSGDONNX", "CSGDImport",
                "CSGDCentripetal", "CSGDDistributed", "CSGDTraining", "CSGDTestSupport",
                "CSGDExport", "CSGDTestGraphs",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "CSGDCLITests",
            dependencies: ["CSGDCore", "CSGDData", "CSGDTestSupport", "CSGDBuildInfo"]),
        .testTarget(
            name: "CSGDHostileInputTests",
            dependencies: ["CSGDCore", "CSGDData", "CSGDTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)

// Every Swift target of ours, tests included, is compiled for the target CPU (see the top).
for target in package.targets where target.type != .system && target.name != "CSGDBuildInfo" {
    target.swiftSettings = (target.swiftSettings ?? []) + cpuSwiftSettings
}
