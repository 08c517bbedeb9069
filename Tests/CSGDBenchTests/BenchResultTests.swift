import Foundation
import XCTest

@testable import CSGDBench

/// `bench --json` lines are what the suite and scripts read back: they must round-trip.
final class BenchResultTests: XCTestCase {
    func testJSONLineRoundTripsWithNullForNonFiniteNumbers() throws {
        let r = BenchResult(
            name: "train_step_\"q\"", value: 101.5, unit: BenchResult.gflopsUnit,
            extra: ["ratio_to_sgemm": 0.63, "comm_fraction": .nan])
        let line = r.jsonLine
        XCTAssertTrue(line.contains("\"comm_fraction\":null"), line)
        XCTAssertTrue(line.contains("\"gflops\":101.5"), line)
        let back = try XCTUnwrap(BenchResult(jsonLine: line))
        XCTAssertEqual(back.name, r.name)
        XCTAssertEqual(back.value, 101.5)
        XCTAssertEqual(back.unit, r.unit)
        XCTAssertEqual(back.extra["ratio_to_sgemm"], 0.63)
        XCTAssertTrue(back.extra["comm_fraction"]!.isNaN)
        XCTAssertNil(back.extra["gflops"], "gflops mirrors value, it is not an extra")
        XCTAssertNil(BenchResult(jsonLine: "bench: kernels…"))
        XCTAssertNil(BenchResult(jsonLine: "{\"value\":1}"))
    }
}
