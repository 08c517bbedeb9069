import CSGDCore
import CSGDModels
import XCTest

final class TopologyTests: XCTestCase {
    func testCifarResNetGroupsFollowTheResidualStreams() throws {
        let a = try Architecture.standard(
            model: "resnet20", inputChannels: 3, imageSize: 32, numClasses: 10)
        let t = try Topology(graph: try a.graph())
        XCTAssertEqual(t.convs.count, 21)
        let residual = t.groups.filter(\.isResidual)
        // Three streams: stem + 3 conv2s; stage 2 and 3: 3 conv2s + the projection.
        XCTAssertEqual(residual.count, 3)
        XCTAssertEqual(residual.map { $0.producers.count }, [4, 4, 4])
        let names = residual.map { g in g.producers.map { t.convs[$0].name } }
        XCTAssertEqual(names[0], ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"])
        XCTAssertTrue(names[1].contains("layer2.0.downsample.0"))
        // Internal groups: one per block conv1, consumed by that block's conv2 only.
        let inner = t.groups.filter { !$0.isResidual }
        XCTAssertEqual(inner.count, 9)
        for g in inner {
            XCTAssertEqual(g.consumers.count, 1)
            guard case .conv(let c) = g.consumers[0] else { return XCTFail("expected conv") }
            XCTAssertTrue(t.convs[c].name.hasSuffix("conv2"))
        }
        // The last stream feeds the FC, one column per channel after global pooling.
        let last = residual[2]
        XCTAssertTrue(
            last.consumers.contains(
                .linear(layerIndex: a.graphLayerCount - 1, featuresPerChannel: 1)))
        // Stage-1 stream feeds layer1 conv1s, layer2.0.conv1 and the stage-2 projection.
        let firstConsumers = residual[0].consumers.compactMap { c -> String? in
            if case .conv(let i) = c { return t.convs[i].name } else { return nil }
        }
        XCTAssertEqual(
            firstConsumers.sorted(),
            [
                "layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1",
                "layer2.0.downsample.0",
            ].sorted())
        // Every conv has its own BN.
        XCTAssertTrue(t.convs.allSatisfy { $0.bnScale != nil })
    }

    func testResNet50InternalAndStreamGroups() throws {
        let a = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 64, numClasses: 10)
        let t = try Topology(graph: try a.graph())
        XCTAssertEqual(t.convs.count, 53)
        XCTAssertEqual(t.groups.filter(\.isResidual).count, 4)
        // stem alone (feeds max pool → layer1.0 conv1 + downsample), 16×2 internal groups.
        XCTAssertEqual(t.groups.filter { !$0.isResidual }.count, 1 + 32)
        let stem = t.groups[t.convs[0].groupIndex]
        XCTAssertEqual(stem.consumers.count, 2)
        // What `internal:` rounds prune: the two first convs of every bottleneck, nothing else.
        XCTAssertTrue(stem.isStem)
        XCTAssertFalse(stem.isBlockInternal)
        let internalConvs = t.convs.filter { t.groups[$0.groupIndex].isBlockInternal }.map(\.name)
        XCTAssertEqual(internalConvs.count, 32)
        XCTAssertTrue(internalConvs.allSatisfy { $0.hasSuffix(".conv1") || $0.hasSuffix(".conv2") })
    }
}

extension Architecture {
    var graphLayerCount: Int { (try? graph().layers.count) ?? 0 }
}
