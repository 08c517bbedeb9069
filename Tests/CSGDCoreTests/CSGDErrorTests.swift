// What an error line may hold: text quoted from a file is escaped and bounded where every
// user-facing error is made.

import CSGDCore
import XCTest

final class CSGDErrorTests: XCTestCase {
    func testControlCharactersAreEscapedAndPrintableTextKept() {
        let e = CSGDError("node '\u{1B}[2J\rfake\nerror: x\tq\u{7F}\u{202E}' é ∑", hint: "a\nb")
        XCTAssertEqual(e.message, #"node '\e[2J\rfake\nerror: x\tq\x7f\u{202e}' é ∑"#)
        XCTAssertEqual(e.hint, #"a\nb"#)
        XCTAssertEqual(CSGDError("cannot read /a b/c.onnx").message, "cannot read /a b/c.onnx")
    }

    func testLongMessagesKeepABoundedPrefix() {
        let name = String(repeating: "n", count: 1_000_000)
        let e = CSGDError("node '\(name)' (Softplus)")
        XCTAssertTrue(e.message.hasPrefix("node 'nnn"))
        XCTAssertTrue(
            e.message.hasSuffix("… (\(1_000_000 + 18 - CSGDError.maxCharacters) more characters)"),
            String(e.message.suffix(60)))
        XCTAssertLessThan(e.message.unicodeScalars.count, CSGDError.maxCharacters + 40)
        let exact = String(repeating: "x", count: CSGDError.maxCharacters)
        XCTAssertEqual(CSGDError(exact).message, exact)
    }
}
