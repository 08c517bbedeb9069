// Errors that reach the user: one line naming the file, flag or shape at fault, plus an
// optional hint. The CLI prints `error: <message>` (and `HINT: <hint>`) and exits non-zero.

/// A user-facing failure: bad input file, bad flag, impossible shape, corrupt checkpoint.
public struct CSGDError: Error, CustomStringConvertible, Equatable {
    /// One line saying what is wrong and naming the file, flag or shape.
    public let message: String
    /// Optional line telling the user what to do about it.
    public let hint: String?

    /// Creates an error with a one-line message and an optional hint. Both are made safe to
    /// print here, the one place every user-facing error passes: control characters (ESC, CR,
    /// newlines, and the Unicode line and bidirectional-override marks) are escaped, so text
    /// quoted from a file cannot move the cursor, recolour the terminal or forge a second
    /// line; and at most `maxCharacters` are kept, so a 1 MB node name or YAML line is quoted
    /// by a prefix, not whole.
    public init(_ message: String, hint: String? = nil) {
        self.message = Self.printable(message)
        self.hint = hint.map(Self.printable)
    }

    /// Longest message or hint kept, in Unicode scalars (a long path still fits whole).
    public static let maxCharacters = 2048

    /// `text` with control characters escaped (`\n`, `\r`, `\t`, `\e`, `\xNN`, `\u{NNNN}`)
    /// and cut after `maxCharacters` scalars, saying how many were left out.
    public static func printable(_ text: String) -> String {
        var out = ""
        var kept = 0
        let scalars = text.unicodeScalars
        for (i, u) in zip(0..., scalars) {
            if kept >= maxCharacters {
                out += "… (\(scalars.count - i) more characters)"
                break
            }
            kept += 1
            switch u.value {
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x1B: out += "\\e"
            case 0..<0x20, 0x7F, 0x80...0x9F:
                out += "\\x" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
            case 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069:
                out += "\\u{" + String(u.value, radix: 16) + "}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    public var description: String { message }
}
