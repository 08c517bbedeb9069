// The Python interpreter for interoperability tests: $CSGD_PYTHON (launch/test.sh points it at
// the venv made by launch/setup-python.sh), else `python3` from PATH. Shared by the test
// targets through this support library (test targets cannot share sources directly).

import Foundation

/// What one Python run printed.
public struct PythonResult {
    /// Exit status.
    public let status: Int32
    /// Everything written to stdout.
    public let stdout: String
    /// Everything written to stderr (the traceback when a script fails).
    public let stderr: String
}

/// Runs the tests' Python interpreter.
public enum Python {
    /// The interpreter the tests run, for messages.
    public static var executable: String {
        ProcessInfo.processInfo.environment["CSGD_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "python3"
    }

    /// Runs the interpreter with `args`; nil if it cannot be started.
    public static func launch(_ args: [String]) -> PythonResult? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [executable] + args
        // stderr goes to a file, so a chatty failure can never block on a full pipe.
        let errPath = NSTemporaryDirectory() + "csgd-python-\(UUID().uuidString).err"
        guard FileManager.default.createFile(atPath: errPath, contents: nil),
            let errFile = FileHandle(forWritingAtPath: errPath)
        else { return nil }
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = errFile
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try? errFile.close()
        let err = FileManager.default.contents(atPath: errPath) ?? Data()
        return PythonResult(
            status: p.terminationStatus, stdout: String(decoding: data, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self))
    }

    /// Python source the interoperability scripts start with: `read_safetensors(path)`, a
    /// plain reader (no safetensors package needed) returning name → numpy array, and
    /// `fmnist_test(n)`, the first `n` Fashion-MNIST test images prepared from the raw files
    /// as the README documents (scaled, normalised, padded to 32×32) and their labels.
    public static let interopPrelude = """
        import gzip, json, struct, sys
        import numpy as np

        def read_safetensors(path):
            b = open(path, "rb").read()
            n = struct.unpack("<Q", b[:8])[0]
            h, d = json.loads(b[8:8 + n]), b[8 + n:]
            dt = {"F32": np.float32, "I32": np.int32}
            return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]],
                                     dt[v["dtype"]]).reshape(v["shape"])
                    for k, v in h.items() if k != "__metadata__"}

        def fmnist_test(n):
            d = "/usr/share/datasets/fashion-mnist/"
            raw = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read(), np.uint8,
                                offset=16)
            raw = raw[:n * 784].reshape(n, 1, 28, 28).astype(np.float32)
            mean, std = np.float32(0.2860), np.float32(0.3530)
            images = np.pad((raw / 255 - mean) / std, ((0, 0), (0, 0), (2, 2), (2, 2)),
                            constant_values=(0 - mean) / std)
            labels = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read(),
                                   np.uint8, offset=8)[:n]
            return images, labels

        """

    /// Runs the interpreter; its stdout on exit status 0, nil if it is missing or fails.
    public static func run(_ args: [String]) -> String? {
        guard let r = launch(args), r.status == 0 else { return nil }
        return r.stdout
    }
}
