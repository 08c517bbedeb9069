// The one assertion every bad-input test makes: the error is a CSGDError, it names what it must
// (file, flag, key…), and it is one line (what the CLI prints).

import CSGDCore
import XCTest

/// Asserts that `body` throws a `CSGDError` whose message contains every string in `needles`
/// and is a single line.
public func assertCSGDError(
    _ needles: [String], file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws -> Void
) {
    do {
        try body()
        XCTFail("expected a CSGDError mentioning \(needles)", file: file, line: line)
    } catch let error as CSGDError {
        for needle in needles where !error.message.contains(needle) {
            XCTFail("message \"\(error.message)\" lacks \"\(needle)\"", file: file, line: line)
        }
        if error.message.contains("\n") {
            XCTFail("message is not one line: \(error.message)", file: file, line: line)
        }
    } catch {
        XCTFail("expected CSGDError, got \(error)", file: file, line: line)
    }
}
