// Tests for RunConfig: defaults, YAML loading, command-line overrides in every spelling, error
// messages (unknown keys, bad types, rule violations), and the exact yaml() round trip.

import CSGDCentripetal
import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

@testable import CSGDConfig

final class RunConfigTests: XCTestCase {
    func testDefaultsValidateAndAreTheShortFashionMNISTRun() throws {
        let c = RunConfig()
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(c.model, "resnet20")
        XCTAssertEqual(c.dataset, .fashionMNIST)
        XCTAssertEqual(c.epochs, 6)
        XCTAssertEqual(c.trainLimit, 10_000)
        XCTAssertEqual(c.centripetalStrength, 0.3)
        XCTAssertEqual(c.batchSize, 64)
        XCTAssertEqual(c.lr, 0.05)
        XCTAssertEqual(c.rounds.map(\.description), ["5/8"])
        XCTAssertEqual(c.rounds.map(ratioValue), [0.625])
        XCTAssertEqual(c.effectiveRounds, c.rounds)
        XCTAssertEqual(c.update, .rank0)
        XCTAssertEqual(c.allreduce, .blocking)
        XCTAssertEqual(try RunConfig.load(yamlText: "", source: "empty.yaml"), c)
        XCTAssertEqual(try RunConfig.load(yamlText: "# only a comment\n", source: "c.yaml"), c)
    }

    /// The table must cover every stored property exactly once (snake_case ↔ camelCase).
    /// Every lr:ε pair the zoo check retries with (launch/zoo-check.sh) is a valid config: a
    /// bound on centripetal_strength once refused its last two, so a net that needed them
    /// (Res2Net's folded random weights) would fail where it had passed.
    func testTheZooChecksLearningRatePairsAreValidConfigs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        let script = try String(contentsOfFile: root + "/launch/zoo-check.sh", encoding: .utf8)
        guard
            let line = script.split(separator: "\n").first(where: {
                $0.hasPrefix("lr_eps_tries=${ZOO_LR_EPS:-")
            })
        else { return XCTFail("no lr_eps_tries line in launch/zoo-check.sh") }
        let pairs = line.dropFirst("lr_eps_tries=${ZOO_LR_EPS:-".count).dropLast()
            .split(separator: " ")
        XCTAssertGreaterThanOrEqual(pairs.count, 2, String(line))
        for pair in pairs {
            let parts = pair.split(separator: ":").map(String.init)
            XCTAssertEqual(parts.count, 2, String(pair))
            guard parts.count == 2 else { continue }
            var c = RunConfig()
            try c.set("lr", to: parts[0])
            try c.set("centripetal_strength", to: parts[1])
            try c.validate()
        }
    }

    func testKeyTableCoversEveryProperty() {
        let properties = Mirror(reflecting: RunConfig()).children.compactMap(\.label)
        let camel = ConfigKey.all.map { key -> String in
            let parts = key.name.split(separator: "_")
            return String(parts[0]) + parts.dropFirst().map { $0.capitalized }.joined()
        }
        XCTAssertEqual(camel, properties)
        XCTAssertEqual(Set(ConfigKey.all.map(\.name)).count, ConfigKey.all.count)
        for key in ConfigKey.all {
            XCTAssertFalse(key.doc.isEmpty, key.name)
            XCTAssertEqual(RunConfig().value(of: key.name), key.render(RunConfig()))
        }
    }

    func testYAMLOverridesOnlyTheKeysPresent() throws {
        let yaml = """
            model: resnet56
            dataset: cifar10
            epochs: 10
            lr: 3e-2
            nesterov: no
            milestones: [4, 8]
            rounds:
              - 13/16
              - "11/16"
              - 0.625
            data_dir: "/data/cifar dir"
            out-dir: runs/r56   # kebab-case works in YAML too
            seed: 0xFF
            threads:   2
            """
        let c = try RunConfig.load(yamlText: yaml, source: "t.yaml")
        var expected = RunConfig()
        expected.model = "resnet56"
        expected.dataset = .cifar10
        expected.epochs = 10
        expected.lr = 0.03
        expected.nesterov = false
        expected.milestones = [4, 8]
        expected.rounds = ["13/16", "11/16", "0.625"].map { RoundTarget(parsing: $0)! }
        expected.dataDir = "/data/cifar dir"
        expected.outDir = "runs/r56"
        expected.seed = 255
        expected.threads = 2
        XCTAssertEqual(c, expected)
        XCTAssertEqual(c.rounds.map(ratioValue), [13.0 / 16, 11.0 / 16, 0.625])
        XCTAssertNoThrow(try c.validate())

        // Empty values: an empty string key and empty lists.
        let d = try RunConfig.load(
            yamlText: "data_dir:\nrounds: []\nmilestones: ''\n", source: "e.yaml")
        XCTAssertEqual(d.dataDir, "")
        XCTAssertEqual(d.rounds, [])
        XCTAssertEqual(d.milestones, [])
    }

    func testCLIOverridesInBothSpellings() throws {
        var c = RunConfig()
        try c.apply(overrides: [
            "--batch-size", "128", "--micro_batches=4", "--lr", "-0.5", "--lr=0.1",
            "--model", "resnet32", "--lr-schedule=multistep", "--milestones", "2,3",
            "--rounds", "13/16,11/16,5/8", "--data-dir=", "--width-multiplier", "1.5",
            "--seed=18446744073709551615", "--cluster_method", "even",
        ])
        XCTAssertEqual(c.batchSize, 128)
        XCTAssertEqual(c.microBatches, 4)
        XCTAssertEqual(c.lr, 0.1)  // last one wins
        XCTAssertEqual(c.model, "resnet32")
        XCTAssertEqual(c.lrSchedule, .multistep)
        XCTAssertEqual(c.milestones, [2, 3])
        XCTAssertEqual(c.rounds.map(\.description), ["13/16", "11/16", "5/8"])
        XCTAssertEqual(c.dataDir, "")
        XCTAssertEqual(c.widthMultiplier, 1.5)
        XCTAssertEqual(c.seed, UInt64.max)
        XCTAssertEqual(c.clusterMethod, .even)
        XCTAssertNoThrow(try c.validate())

        try c.apply(overrides: ["--milestones="])
        XCTAssertEqual(c.milestones, [])
        try c.set("train-limit", to: "500")
        XCTAssertEqual(c.trainLimit, 500)
        XCTAssertEqual(c.value(of: "train_limit"), "500")
        XCTAssertNil(c.value(of: "nope"))
    }

    func testBoolFlags() throws {
        var c = RunConfig()
        try c.apply(overrides: ["--no-augment", "--debug", "--no_nesterov"])
        XCTAssertFalse(c.augment)
        XCTAssertTrue(c.debug)
        XCTAssertFalse(c.nesterov)
        try c.apply(overrides: ["--augment", "--debug=false", "--nesterov", "yes", "--epochs", "2"])
        XCTAssertTrue(c.augment)
        XCTAssertFalse(c.debug)
        XCTAssertTrue(c.nesterov)
        XCTAssertEqual(c.epochs, 2)
        try c.apply(overrides: ["--debug", "off", "--augment=0"])
        XCTAssertFalse(c.debug)
        XCTAssertFalse(c.augment)
        assertCSGDError(["--no-debug takes no value"]) {
            try c.apply(overrides: ["--no-debug=true"])
        }
        assertCSGDError(["debug", "true or false", "'maybe'"]) {
            try c.apply(overrides: ["--debug=maybe"])
        }
        // "--no-" only negates booleans.
        assertCSGDError(["unknown config key 'no-epochs'"]) {
            try c.apply(overrides: ["--no-epochs"])
        }
    }

    func testUnknownKeysNameKeyAndSource() throws {
        do {
            _ = try RunConfig.load(yamlText: "epochs: 3\nfoo: 1\n", source: "my.yaml")
            XCTFail("expected an error")
        } catch let e as CSGDError {
            XCTAssertTrue(
                e.message.hasPrefix("unknown config key 'foo' (from my.yaml:2)"), e.message)
            XCTAssertEqual(e.hint, "run `csgd-dist config --list` to see the keys")
        }
        var c = RunConfig()
        do {
            try c.apply(overrides: ["--epochs", "3", "--batch-sise", "32"])
            XCTFail("expected an error")
        } catch let e as CSGDError {
            XCTAssertEqual(
                e.message,
                "unknown config key 'batch-sise' (from command line); did you mean 'batch_size'?")
            XCTAssertEqual(e.hint, "run `csgd-dist config --list` to see the keys")
        }
        XCTAssertEqual(c, RunConfig(), "a failed apply leaves the config unchanged")
        assertCSGDError(["unknown config key 'zzz' (from env)"]) {
            try c.apply(overrides: ["--zzz=1"], source: "env")
        }
    }

    func testTypeErrorsNameKeyAndValue() {
        var c = RunConfig()
        let cases: [([String], [String])] = [
            (["--batch-size", "lots"], ["'batch_size' expects an integer, got 'lots'"]),
            (["--lr=fast"], ["'lr' expects a finite number, got 'fast'"]),
            (["--lr=inf"], ["'lr'", "'inf'"]),
            (["--seed", "-1"], ["'seed'", "got '-1'"]),
            (["--milestones", "2,x"], ["'milestones' expects a list of integers, got 'x'"]),
            (["--rounds", "5/8,half"], ["'rounds'", "got 'half'"]),
            (["--rounds", "1/0"], ["'rounds'", "got '1/0'"]),
            (
                ["--rounds=5/8,3/2"],
                ["'rounds' expects a list of ratios", "in (0, 1]", "got '3/2'"]
            ),
            (["--rounds=0"], ["'rounds'", "got '0'"]),
            (["--rounds=widen-squeeze"], ["'rounds'", "got 'widen-squeeze'"]),
            (["--rounds=internal:"], ["'rounds'", "got 'internal:'"]),
            (["--epochs"], ["--epochs needs a value"]),
            (["--epochs", "--lr", "1"], ["--epochs needs a value"]),
            (["epochs", "3"], ["unexpected argument 'epochs'"]),
        ]
        for (words, parts) in cases {
            assertCSGDError(parts + ["command line"]) { try c.apply(overrides: words) }
        }
        let yamlCases: [(String, [String])] = [
            ("epochs: [1, 2]", ["'epochs' expects an integer, got a list (from y.yaml:1)"]),
            ("epochs: {a: 1}", ["'epochs'", "got a mapping"]),
            ("milestones: [[1]]", ["'milestones'", "got a nested value"]),
            ("lr: 0.1\nbatch_size: 1.5", ["'batch_size'", "'1.5'", "y.yaml:2"]),
            ("epochs: 2\nepochs: 3", ["'epochs' is given twice (from y.yaml:2)"]),
            ("epochs: 2\nbatch-size: 3\nbatch_size: 4", ["'batch_size' is given twice"]),
            ("- a\n- b", ["y.yaml", "mapping"]),
            ("epochs: [1,\n", ["y.yaml", "invalid YAML"]),
            ("a: b: c", ["y.yaml:1", "invalid YAML"]),
        ]
        for (text, parts) in yamlCases {
            assertCSGDError(parts) {
                _ = try RunConfig.load(yamlText: text, source: "y.yaml")
            }
        }
        assertCSGDError(["cannot read config /nonexistent/x.yaml", "no such file"]) {
            _ = try RunConfig.load(yamlPath: "/nonexistent/x.yaml")
        }
    }

    /// Every mode key refuses a value outside its enum at parse time, naming the key and
    /// listing every allowed value; on the command line and in YAML alike.
    func testUnknownModeValueNamesKeyAndListsAllowedValues() {
        let modes: [(key: String, allowed: [String])] = [
            ("dataset", DatasetKind.allCases.map(\.rawValue)),
            ("bad_images", BadImagePolicy.allCases.map(\.rawValue)),
            ("lr_schedule", LRScheduleKind.allCases.map(\.rawValue)),
            ("cluster_method", ClusterMethod.allCases.map(\.rawValue)),
            ("update", UpdateMode.allCases.map(\.rawValue)),
            ("allreduce", AllreduceMode.allCases.map(\.rawValue)),
            ("merge", MergeMode.allCases.map(\.rawValue)),
            ("sensitivity_context", SensitivityContext.allCases.map(\.rawValue)),
        ]
        XCTAssertEqual(
            Set(ConfigKey.all.filter { $0.type == "enum" }.map(\.name)), Set(modes.map(\.key)),
            "every enum key is covered")
        for (key, allowed) in modes {
            XCTAssertGreaterThan(allowed.count, 1)
            var c = RunConfig()
            let expected = "config key '\(key)' expects one of \(allowed.joined(separator: ", ")), "
            assertCSGDError([expected + "got 'bogus' (from command line)"]) {
                try c.apply(overrides: ["--\(key)", "bogus"])
            }
            assertCSGDError([expected + "got 'Bogus' (from m.yaml:1)"]) {
                _ = try RunConfig.load(yamlText: "\(key): Bogus\n", source: "m.yaml")
            }
            // Every allowed spelling parses and renders back to itself.
            for value in allowed {
                XCTAssertNoThrow(try c.apply(overrides: ["--\(key)=\(value)"]), value)
                XCTAssertEqual(c.value(of: key), value)
            }
        }
    }

    func testValidateFailuresNameTheKey() {
        let cases: [(String, [String])] = [
            ("--batch-size=0", ["'batch_size' must be in 1...1048576 (got 0)"]),
            ("--epochs=0", ["'epochs' must be in 1...100000"]),
            ("--lr=0", ["'lr' must be in (0, 1000000.0] (got 0.0)"]),
            ("--momentum=1", ["'momentum' must be in [0, 1)"]),
            (
                "--model=res net",
                ["'model' must be a built-in model (resnet20", "(got \"res net\")"]
            ),
            ("--bucket-mb=0", ["'bucket_mb' must be in (0, 65536.0] (got 0.0)"]),
            ("--widen=0", ["'widen' must be in 1...64"]),
            ("--milestones=3,2", ["'milestones' must hold strictly increasing"]),
            ("--milestones=0", ["'milestones'"]),
            ("--micro-batches=3", ["'batch_size' (64) must be divisible by micro_batches (3)"]),
            ("--weight-decay=-1", ["'weight_decay' must be in [0, 10.0]"]),
            ("--prune-tolerance=0", ["'prune_tolerance'"]),
            ("--out-dir=", ["'out_dir' must be non-empty"]),
            ("--train-limit=-5", ["'train_limit'"]),
            ("--width-multiplier=0", ["'width_multiplier'"]),
            ("--log-every=0", ["'log_every'"]),
            // Upper bounds: every number has one (step arithmetic never overflows).
            ("--epochs=100001", ["'epochs' must be in 1...100000 (got 100001)"]),
            ("--lr=1e7", ["'lr' must be in (0, 1000000.0]"]),
            ("--batch-size=2000000", ["'batch_size' must be in 1...1048576"]),
            ("--milestones=5,100001", ["'milestones'", "1...100000"]),
            ("--warmup-epochs=1e300", ["'warmup_epochs' must be in [0, 100000.0]"]),
            ("--keep-checkpoints=100001", ["'keep_checkpoints'"]),
            ("--collective-timeout-s=1e9", ["'collective_timeout_s'"]),
        ]
        for (flag, parts) in cases {
            var c = RunConfig()
            XCTAssertNoThrow(try c.apply(overrides: [flag]), flag)
            assertCSGDError(parts) { try c.validate() }
        }
        var c = RunConfig()
        c.momentum = 0
        assertCSGDError(["'nesterov' requires momentum > 0"]) { try c.validate() }
        c.nesterov = false
        XCTAssertNoThrow(try c.validate())
        c.batchSize = 64
        c.microBatches = 4
        XCTAssertNoThrow(try c.validate(worldSize: 2))
        assertCSGDError(["micro_batches × ranks (4 × 3 = 12)"]) {
            try c.validate(worldSize: 3)
        }
        c.rounds = []
        c.checkpointEverySteps = 0
        c.verifyEvery = 0
        XCTAssertNoThrow(try c.validate())
        // BatchNorm groups: g must divide the ranks; checked only once the ranks are known.
        c.bnGroupSize = 2
        c.batchSize = 48
        c.microBatches = 1
        XCTAssertNoThrow(try c.validate())
        XCTAssertNoThrow(try c.validate(worldSize: 4))
        assertCSGDError(["config key 'bn_group_size' (2) must divide the number of ranks (3)"]) {
            try c.validate(worldSize: 3)
        }
        assertCSGDError(["'bn_group_size' (2) must divide the number of ranks (1)"]) {
            try c.validate(worldSize: 1)
        }
        var zero = RunConfig()
        XCTAssertNoThrow(try zero.apply(overrides: ["--bn-group-size", "0"]))
        assertCSGDError(["bn_group_size"]) { try zero.validate() }
    }

    func testYAMLRoundTripIsExact() throws {
        XCTAssertEqual(try RunConfig.load(yamlText: RunConfig().yaml(), source: "d"), RunConfig())

        // Every key away from its default, with awkward strings and floats.
        var c = RunConfig()
        c.model = "resnet110"
        c.widthMultiplier = 0.1 + 0.2
        c.dataset = .cifar100
        c.dataDir = "/tmp/a b: \"c\" #d\\e\n\té"
        c.trainLimit = 1000
        c.testLimit = 200
        c.augment = false
        c.imageSize = 64
        c.loaderWorkers = 5
        c.prefetchBatches = 1
        c.badImages = .skip
        c.maxImagePixels = 4096 * 4096
        c.epochs = 600
        c.maxSteps = 12
        c.batchSize = 256
        c.microBatches = 8
        c.lr = 1.0 / 3.0
        c.momentum = 0.875
        c.nesterov = false
        c.weightDecay = 5e-5
        c.biasLrFactor = 1
        c.biasWeightDecay = 1e-300
        c.lrSchedule = .multistep
        c.milestones = [200, 400]
        c.lrGamma = 0.2
        c.warmupEpochs = 2.5
        c.seed = UInt64.max
        c.threads = 2
        c.evalEvery = 5
        c.checkpointEvery = 10
        c.checkpointEverySteps = 40_000
        c.keepCheckpoints = 7
        c.logEvery = 10
        c.outDir = "null"
        c.centripetalStrength = 0.05
        c.csgdWeightDecay = 0
        c.vectorStrengthFactor = 0.25
        c.rounds = ["13/16", "0.6875", "internal:5/8"].map { RoundTarget(parsing: $0)! }
        c.clusterMethod = .even
        c.widen = 2
        c.pruneTolerance = 1e-6
        c.finetuneEpochs = 3
        c.targetFlops = "16M"
        c.targetParams = "0.5"
        c.layerWidths = ["layer3.*.conv1=40", "conv1=8"]
        c.exclude = ["layer1.0.conv1"]
        c.minWidth = 3
        c.sensitivityImages = 64
        c.sensitivitySteps = 4
        c.sensitivityContext = .uniform
        c.merge = .mean
        c.recalibrateBatches = 200
        c.roundEndBnBatches = 3
        c.update = .replicated
        c.allreduce = .overlap
        c.bucketMb = 0.25
        c.verifyEvery = 7
        c.bnGroupSize = 8
        c.collectiveTimeoutS = 12.5
        c.debug = true
        let yaml = c.yaml()
        for (label, value) in Mirror(reflecting: c).children {
            let d = Mirror(reflecting: RunConfig()).children.first { $0.label == label }!.value
            XCTAssertNotEqual("\(value)", "\(d)", "\(label!) should differ from its default")
        }
        let back = try RunConfig.load(yamlText: yaml, source: "rt")
        XCTAssertEqual(back, c, yaml)
        XCTAssertEqual(back.yaml(), yaml)
        XCTAssertTrue(yaml.contains("rounds: [13/16, 0.6875, \"internal:5/8\"]\n"), yaml)
        XCTAssertTrue(yaml.contains("milestones: [200, 400]\n"), yaml)
        XCTAssertTrue(yaml.contains("out_dir: \"null\"\n"), yaml)
        XCTAssertTrue(yaml.contains("seed: 18446744073709551615\n"), yaml)
        for key in ConfigKey.all { XCTAssertTrue(yaml.contains("\n\(key.name): "), key.name) }
    }

    func testDescribeKeysListsEveryKeyWithDefault() {
        let text = RunConfig.describeKeys()
        for key in ConfigKey.all {
            XCTAssertTrue(text.contains("  \(key.name) "), key.name)
        }
        let batch = text.split(separator: "\n").first { $0.contains(" batch_size ") }
        XCTAssertNotNil(batch)
        XCTAssertTrue(batch?.contains("int") ?? false)
        XCTAssertTrue(batch?.contains("64") ?? false)
        XCTAssertTrue(text.contains("resnet20 | resnet32"))
    }

    /// The ImageNet config at the ranks its sbatch script starts (8 nodes × 8 ranks): BN groups
    /// give every BatchNorm the paper's 32 images.
    func testImageNetConfigPoolsBatchNormOver32Images() throws {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("cluster-configs/imagenet-resnet50-csgd.yaml").path
        let c = try RunConfig.load(yamlPath: path)
        let ranks = 64
        XCTAssertNoThrow(try c.validate(worldSize: ranks))
        XCTAssertEqual(c.batchSize / ranks / c.microBatches * c.bnGroupSize, 32)
    }

    func testExampleClusterConfigLoadsAndValidates() throws {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("cluster-configs/fashion-mnist-resnet20.yaml").path
        let c = try RunConfig.load(yamlPath: path)
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(c.model, "resnet20")
        XCTAssertEqual(c.dataset, .fashionMNIST)
        XCTAssertLessThanOrEqual(c.epochs, 10)
        XCTAssertEqual(try RunConfig.load(yamlText: c.yaml(), source: path), c)
        var internalRounds = RunConfig()
        try internalRounds.apply(overrides: ["--rounds", "internal:0.7,internal:0.6"])
        XCTAssertNoThrow(try internalRounds.validate())
        XCTAssertEqual(
            internalRounds.rounds,
            [.internalOnly(WidthRatio("0.7")!), .internalOnly(WidthRatio("0.6")!)])
        // The quick-start file spells out the built-in defaults.
        XCTAssertEqual(c, RunConfig())
        // Every shipped experiment config loads and validates.
        let dir = root.appendingPathComponent("cluster-configs").path
        let yamls = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThan(yamls.count, 1)
        for name in yamls {
            XCTAssertNoThrow(try RunConfig.load(yamlPath: dir + "/" + name).validate(), name)
        }
    }

}

/// The fraction of a ratio round (nil for the widen squeeze and a budget).
private func ratioValue(_ r: RoundTarget) -> Double? {
    switch r {
    case .ratio(let w), .internalOnly(let w): return w.value
    case .widenSqueeze, .budget: return nil
    }
}
