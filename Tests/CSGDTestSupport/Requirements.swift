// What the interoperability tests need from the machine, checked the same way everywhere: the
// test skips, saying why and how to get it (launch/setup.sh, launch/setup-python.sh).

import Foundation
import XCTest

/// Preconditions of tests that read the real dataset or run Python packages.
public enum Requirements {
    /// Where Debian's dataset-fashion-mnist installs the files.
    public static let fashionMNIST = "/usr/share/datasets/fashion-mnist"

    /// Skips unless the Fashion-MNIST files are installed.
    public static func fashionMNISTInstalled() throws {
        if !FileManager.default.fileExists(atPath: fashionMNIST) {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
    }

    /// Skips unless the tests' Python imports every module in `modules`, with `path` first on
    /// its module path when given (torchvision on PyTorch's CPU wheel needs `launch/zoo`'s
    /// tv_cpu imported before it: a plain `import torchvision` fails there).
    public static func pythonModules(_ modules: [String], path: String? = nil) throws {
        let prefix = path.map { "import sys; sys.path.insert(0, \"\($0)\"); " } ?? ""
        if Python.run(["-c", prefix + "import " + modules.joined(separator: ", ")]) == nil {
            throw XCTSkip(
                "\(Python.executable) cannot import \(modules.joined(separator: " and ")) "
                    + "(run launch/setup-python.sh, or set CSGD_PYTHON)")
        }
    }
}
