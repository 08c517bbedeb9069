// `csgd-dist report RUN_DIR`: one self-contained HTML page (inline SVG, no scripts, no network)
// from a run directory's metrics.jsonl, config.yaml, command.txt and checkpoints.

import ArgumentParser
import CSGDCore
import CSGDReport
import Foundation

/// Writes `<run-dir>/report.html` (or `--output`) and prints its path.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an HTML report (curves, widths, equivalence check) of a run directory.",
        discussion: """
            Reads RUN_DIR/metrics.jsonl (and config.yaml, command.txt, the checkpoints when \
            present) and writes one HTML file with inline SVG charts: loss and accuracy per \
            epoch, the C-SGD deviation on a log scale, per-layer widths before and after \
            pruning, parameters and FLOPs, the equivalence check, the command and config.
            """)

    @Argument(help: "The out_dir of a train, csgd or prune run.") var runDir: String

    @Option(help: "Where to write the HTML (default: RUN_DIR/report.html).") var output: String?

    func run() throws {
        do {
            let records = try RunRecords(directory: runDir)
            let path = output ?? runDir + "/report.html"
            // The run's own records are its inputs (and a user's results): never written over.
            let own = ((try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? [])
                .filter { !$0.hasSuffix(".html") }.map { runDir + "/" + $0 }
            try refuseOutputOverInputs(path, flag: "--output", inputs: own)
            try writeFileAtomically(Data(HTMLReport.render(records).utf8), to: path)
            print(
                "report: \(path) (\(records.epochs.count) epochs, \(records.prunes.count) prunes)")
        } catch {
            fail(error, comm: nil)
        }
    }
}
