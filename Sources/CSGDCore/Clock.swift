// One clock for every timer (step phases, communication, benchmarks, ETAs).

import Foundation

/// Seconds on the monotonic clock (unaffected by wall-clock changes).
public func monotonicSeconds() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}
