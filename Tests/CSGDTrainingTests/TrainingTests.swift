import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDData
import CSGDDistributed
import CSGDModels
import CSGDRunData
import CSGDRunFiles
import CSGDTraining
import XCTest

/// Training-loop behaviour on real Fashion-MNIST subsets (skipped when the Debian package
/// dataset-fashion-mnist is not installed). Small nets and few steps keep each case to seconds.
final class TrainingTests: XCTestCase {
    var outDir = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(
            atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz")
        {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        outDir = NSTemporaryDirectory() + "csgd-train-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: outDir) }

    func config(_ overrides: [String]) throws -> RunConfig {
        var c = RunConfig()
        try c.apply(
            overrides: [
                "--train-limit", "512", "--test-limit", "256", "--batch-size", "32",
                "--log-every", "1000", "--out-dir", outDir, "--verify-every", "0",
            ] + overrides)
        try c.validate()
        return c
    }

    /// ResNet-8 with widths 4/8/16: fast enough for unit tests, still every block type.
    func smallNet(_ data: DataBundle, seed: UInt64) throws -> Network {
        var c = RunConfig()
        c.model = "resnet20"
        var a = try Architecture.standard(
            model: "resnet8", inputChannels: data.train.channels, imageSize: data.train.height,
            numClasses: data.train.numClasses)
        a.widths = a.widths.map { $0 / 4 }
        let net = try Network(architecture: a)
        net.initialize(seed: seed)
        return net
    }

    func testLossFallsOnRealData() throws {
        let c = try config(["--epochs", "6", "--lr", "0.1", "--augment=false"])
        let data = try DataBundle.load(c)
        let trainer = try Trainer(comm: LocalCommunicator(), config: c, data: data)
        let net = try smallNet(data, seed: 1)
        let before = try trainer.evaluate(net, data.train.subset(first: 256))
        _ = try trainer.train(
            net, state: TrainState(phase: .train, round: 0, worldSize: 1), epochs: 6,
            centripetal: nil)
        let after = try trainer.evaluate(net, data.train.subset(first: 256))
        XCTAssertLessThan(after.loss, before.loss * 0.8, "loss \(before.loss) → \(after.loss)")
        XCTAssertGreaterThan(after.top1, 0.5)
    }

    func testResumeIsBitwiseIdentical() throws {
        // 2 epochs straight vs 1 epoch (stopped by max_steps, checkpointed) + resume + 1.
        let c = try config(["--epochs", "2", "--checkpoint-every", "1"])
        let data = try DataBundle.load(c)
        let straight = try smallNet(data, seed: 2)
        let t1 = try Trainer(comm: LocalCommunicator(), config: c, data: data)
        _ = try t1.train(
            straight, state: TrainState(phase: .train, round: 0, worldSize: 1), epochs: 2,
            centripetal: nil)

        var half = c
        half.maxSteps = 512 / 32
        let resumedDir = outDir + "/resumed"
        half.outDir = resumedDir
        let t2 = try Trainer(comm: LocalCommunicator(), config: half, data: data)
        let first = try smallNet(data, seed: 2)
        let r = try t2.train(
            first, state: TrainState(phase: .train, round: 0, worldSize: 1), epochs: 2,
            centripetal: nil)
        XCTAssertFalse(r.completed)
        let ck = try Checkpoint.load(path: resumedDir + "/checkpoint.safetensors")
        XCTAssertEqual(ck.state?.epoch, 1)
        XCTAssertEqual(ck.state?.step, 0)
        var rest = c
        rest.outDir = resumedDir
        let t3 = try Trainer(comm: LocalCommunicator(), config: rest, data: data)
        _ = try t3.train(ck.network, state: ck.state!, epochs: 2, centripetal: nil)
        XCTAssertEqual(Array(straight.store.values.buffer), Array(ck.network.store.values.buffer))
        XCTAssertEqual(Array(straight.store.buffers.buffer), Array(ck.network.store.buffers.buffer))
        XCTAssertEqual(
            Array(straight.store.momentum.buffer), Array(ck.network.store.momentum.buffer))
        XCTAssertEqual(straight.store.checksum(), ck.network.store.checksum())
    }

    func testShortCSGDRunCollapsesClustersAndPrunesWithoutChangingAccuracy() throws {
        // Strong ε with a constant LR: kernels contract at the heavy-ball limit √μ per step.
        // 320 steps at ~√0.9 per step take the deviation to float-rounding level; a looser
        // collapse is not enough, because BN divides near-dead channels by √(var + 1e-5) and
        // so magnifies leftover differences by up to ~300×.
        let c = try config([
            "--epochs", "10", "--lr", "0.05", "--lr-schedule", "constant", "--train-limit", "1024",
            "--centripetal-strength", "0.5", "--vector-strength-factor", "1",
        ])
        let data = try DataBundle.load(c)
        let trainer = try Trainer(comm: LocalCommunicator(), config: c, data: data)
        let net = try smallNet(data, seed: 3)
        let topology = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: topology, target: .ratio(0.5), method: .kmeans, seed: 1)
        let cen = CentripetalUpdate(
            topology: topology, plan: plan, store: net.store,
            config: CentripetalConfig(strength: 0.5, weightDecay: 1e-4, vectorStrengthFactor: 1))
        let start = cen.deviation(net.store).kernels
        _ = try trainer.train(
            net, state: TrainState(phase: .csgd, round: 0, worldSize: 1, plan: plan),
            epochs: 10, centripetal: cen)
        let dev = cen.deviation(net.store)
        XCTAssertGreaterThan(start, 1e-2)
        XCTAssertLessThan(dev.kernels, 1e-6, "kernel deviation \(start) → \(dev.kernels)")
        XCTAssertLessThan(dev.vectors, 1e-6)
        let thin = try Pruner.prune(net, topology: topology, plan: plan)
        let check = try trainer.compare(net, thin, on: data.test)
        XCTAssertEqual(check.a.top1, check.b.top1, "accuracy changed by pruning")
        XCTAssertLessThan(check.maxLogitDiff, 1e-4)
        XCTAssertLessThan(thin.graph.flopsPerImage, net.graph.flopsPerImage / 3)
    }

    func testCheckpointRejectsCorruptionAndForeignFiles() throws {
        let c = try config([])
        let data = try DataBundle.load(c)
        let net = try smallNet(data, seed: 4)
        let path = outDir + "/m.safetensors"
        try Checkpoint.save(path: path, network: net, includeMomentum: true)
        let back = try Checkpoint.load(path: path)
        XCTAssertEqual(back.network.architecture, net.architecture)
        XCTAssertEqual(back.network.store.checksum(), net.store.checksum())
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 5] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Checkpoint.load(path: path)) { e in
            XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
        var plain = SafeTensorsFile()
        plain.add("x", shape: [1], floats: [1])
        try plain.write(path: path)
        XCTAssertThrowsError(try Checkpoint.load(path: path)) { e in
            XCTAssertTrue("\(e)".contains("not a csgd-dist model"), "\(e)")
        }
    }

    func testSGDMatchesPyTorchNesterovWithParameterGroups() throws {
        // Two hand-computed steps of torch.optim.SGD(momentum 0.9, nesterov, wd on weights).
        var b = ParameterStoreBuilder()
        let w = b.addParameter("conv.weight", shape: [1, 1, 1, 1], role: .convWeight)
        let bias = b.addParameter("fc.bias", shape: [1], role: .fcBias)
        let s = b.build()
        s.value(w)[0] = 1
        s.value(bias)[0] = 1
        var c = RunConfig()
        c.weightDecay = 0.1
        let sgd = SGD(store: s, config: SGDConfig(c))
        for _ in 0..<2 {
            s.grad(w)[0] = 0.5
            s.grad(bias)[0] = 0.5
            sgd.step(s, lr: 0.1)
        }
        // weight: g = 0.5 + 0.1·1 = 0.6, buf 0.6, step 0.6 + 0.54 = 1.14 → w = 0.886;
        //         g = 0.5 + 0.0886 = 0.5886, buf 0.54 + 0.5886 = 1.1286,
        //         step 0.5886 + 1.01574 = 1.60434 → w = 0.886 − 0.160434 = 0.725566.
        XCTAssertEqual(Double(s.value(w)[0]), 0.725566, accuracy: 1e-6)
        // bias: lr ×2 = 0.2, no decay: buf 0.5, step 0.5 + 0.45 = 0.95 → w = 0.81;
        //       buf 0.45 + 0.5 = 0.95, step 0.5 + 0.855 = 1.355 → w = 0.81 − 0.271 = 0.539.
        XCTAssertEqual(Double(s.value(bias)[0]), 0.539, accuracy: 1e-6)
    }

    func testLRSchedules() {
        var c = RunConfig()
        c.lr = 1
        c.lrSchedule = .multistep
        c.milestones = [2, 3]
        c.lrGamma = 0.1
        c.warmupEpochs = 1
        let s = LRSchedule(c, stepsPerEpoch: 10, epochs: 4)
        XCTAssertEqual(s.lr(at: 0), 0)
        XCTAssertEqual(s.lr(at: 5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 19), 1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 20), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 30), 0.01, accuracy: 1e-12)
        c.lrSchedule = .cosine
        c.warmupEpochs = 0
        let cos = LRSchedule(c, stepsPerEpoch: 10, epochs: 4)
        XCTAssertEqual(cos.lr(at: 20), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cos.lr(at: 40), 0, accuracy: 1e-12)
    }
}
