// Errors that reach the user: one line naming the file, flag or shape at fault, plus an
// optional hint. The CLI prints `error: <message>` (and `HINT: <hint>`) and exits non-zero.

/// A user-facing failure: bad input file, bad flag, impossible shape, corrupt checkpoint.
public struct CSGDError: Error, CustomStringConvertible, Equatable {
    /// One line saying what is wrong and naming the file, flag or shape.
    public let message: String
    /// Optional line telling the user what to do about it.
    public let hint: String?

    /// Creates an error with a one-line message and an optional hint.
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
}
