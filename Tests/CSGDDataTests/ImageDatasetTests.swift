// ImageDataset bookkeeping: sizes and `subset(first:)`.

import CSGDData
import XCTest

final class ImageDatasetTests: XCTestCase {
    func testSubsetKeepsThePrefix() {
        let ds = ImageDataset(
            name: "tiny", channels: 2, height: 2, width: 3, numClasses: 4,
            pixels: (0..<60).map { UInt8($0) }, labels: [0, 1, 2, 3, 0], mean: [0.5, 0.25],
            std: [0.1, 0.2])
        XCTAssertEqual(ds.count, 5)
        XCTAssertEqual(ds.imageSize, 12)
        let sub = ds.subset(first: 2)
        XCTAssertEqual(sub.count, 2)
        XCTAssertEqual(sub.labels, [0, 1])
        XCTAssertEqual(sub.pixels, (0..<24).map { UInt8($0) })
        XCTAssertEqual([sub.channels, sub.height, sub.width, sub.numClasses], [2, 2, 3, 4])
        XCTAssertEqual(sub.mean, ds.mean)
        XCTAssertEqual(sub.std, ds.std)
        XCTAssertEqual(ds.subset(first: 99), ds)
        XCTAssertEqual(ds.subset(first: 0).count, 0)
    }
}
