// Budgets on imported graphs (issue 18): the ONNX fixtures' MobileNetV2-style net (depthwise
// convs, inverted residuals, a grouped conv whose spaces the topology fixes) and DenseNet-style
// net (concatenations) get a measured sensitivity table and a FLOPs or parameter budget; the
// widths the allocator chooses, rebuilt into the graph, must land within ±1 % of the target,
// and the fixed spaces must keep their width.

import CSGDCentripetal
import CSGDDistributed
import CSGDImport
import CSGDModels
import CSGDTraining
import XCTest

final class ImportedBudgetTests: XCTestCase {
    func testBudgetIsMetWithinOnePercentOnImportedGraphs() throws {
        let cases: [(String, BudgetMetric, String)] = [
            ("mobilenet-bn", .flops, "0.6"), ("mobilenet-bn", .params, "0.7"),
            ("densenet-bn", .flops, "0.4"), ("densenet-bn", .params, "0.5"),
        ]
        for (fixture, metric, text) in cases {
            let imported = try ONNXImport.read(
                path: ImportFixtureTests.fixtures + "/\(fixture).onnx")
            let a = imported.architecture
            let net = try imported.network()
            let t = try Topology(graph: net.graph)
            let bounds = try LayerControls().bounds(t, model: a.model)
            let table = try Sensitivity.measure(
                comm: LocalCommunicator(), net: net, topology: t,
                samples: SampleBatches.gaussian(for: a, batches: 1, batch: 8, seed: 3),
                bounds: bounds, steps: 4,
                method: .kmeans, seed: 5)
            let target = try BudgetTarget(parsing: text, metric: metric, key: "target")
            let alloc = try BudgetAllocator.allocate(
                architecture: a, topology: t, sensitivity: table, target: target, bounds: bounds)

            var pruned = a
            pruned.widths = t.convs.map { alloc.groupWidths[$0.groupIndex] }
            let full = Double(metric.measure(try a.graph()))
            let got = Double(metric.measure(try pruned.graph()))
            let goal = target.absolute(full: Int(full))
            let tag = "\(fixture) \(metric) \(text)"
            XCTAssertEqual(Int(got), alloc.achieved, tag)
            XCTAssertLessThanOrEqual(abs(got / goal - 1), 0.01, "\(tag): \(got) vs \(goal)")
            XCTAssertLessThan(got, full, tag)
            // Spaces the topology fixes keep their width; something else did shrink.
            for g in t.groups where g.isFixed {
                XCTAssertEqual(
                    alloc.groupWidths[g.index], g.width, "\(tag): fixed group \(g.index)")
            }
            XCTAssertTrue(t.groups.contains { alloc.groupWidths[$0.index] < $0.width }, tag)
            if fixture == "mobilenet-bn" {
                // The grouped conv's spaces are among the fixed ones checked above.
                XCTAssertTrue(
                    t.groups.contains { $0.fixedReason?.contains("grouped conv") == true }, tag)
            }
        }
    }
}
