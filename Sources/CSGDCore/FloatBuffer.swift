// A fixed-size, heap-allocated Float block with a stable base pointer.
//
// Kernels take raw pointers (llm.c style). A class that owns one allocation keeps those pointers
// valid for the object's lifetime and sidesteps Array copy-on-write and exclusivity checks.

/// A contiguous, zero-initialised block of `Float` with a stable address.
public final class FloatBuffer {
    /// Number of elements.
    public let count: Int
    /// Base address; valid while the buffer is alive.
    public let pointer: UnsafeMutablePointer<Float>

    /// Allocates `count` floats, all zero.
    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// Allocates a buffer holding a copy of `values`.
    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { pointer.deallocate() }

    /// A bounds-unchecked buffer view over all elements.
    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }

    /// Copies the contents into an array.
    public var array: [Float] { Array(buffer) }

    /// Sets every element to zero.
    public func zero() { pointer.update(repeating: 0, count: count) }

    /// Element access (bounds-checked in debug builds only).
    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}
