// The self-contained HTML page of `csgd-dist report RUN_DIR`: curves per epoch, the C-SGD
// deviation on a log scale, per-layer widths before → after, the size change and the
// equivalence check, and the command and config that produced the run.

import CSGDConfig
import CSGDRunFiles
import Foundation

/// Renders a run's records as one HTML document.
public enum HTMLReport {
    static let trainColor = "#1f77b4"
    static let testColor = "#d62728"

    /// The whole page.
    public static func render(_ run: RunRecords) -> String {
        let xs = epochAxis(run.epochs)
        let markers = phaseMarkers(run.epochs, xs)
        var body = "<h1>csgd-dist run: \(escapeXML(run.directory))</h1>\n"
        body += summary(run)
        body += "<h2>Training curves</h2>\n<div class=\"charts\">\n"
        body += SVGChart.lines(
            title: "Loss per epoch", xLabel: "epoch (all phases)", yLabel: "cross-entropy",
            series: [
                series("train loss", trainColor, run.epochs, xs, \.trainLoss),
                series("test loss", testColor, run.epochs, xs, \.testLoss, dashed: true),
            ], markers: markers)
        body += SVGChart.lines(
            title: "Top-1 accuracy per epoch (%)", xLabel: "epoch (all phases)",
            yLabel: "top-1 %",
            series: [
                series("train top-1", trainColor, run.epochs, xs, \.trainTop1, scale: 100),
                series("test top-1", testColor, run.epochs, xs, \.testTop1, scale: 100),
            ], markers: markers)
        let csgd = run.epochs.indices.filter { run.epochs[$0].deviationKernels != nil }
        if !csgd.isEmpty {
            let sub = csgd.map { run.epochs[$0] }
            let subX = csgd.map { xs[$0] }
            body += SVGChart.lines(
                title: "C-SGD deviation from cluster centres (log scale)",
                xLabel: "epoch (all phases)", yLabel: "mean squared deviation",
                series: [
                    series("kernels", "#2ca02c", sub, subX, \.deviationKernels),
                    series("BN / bias vectors", "#9467bd", sub, subX, \.deviationVectors),
                ], markers: markers, logY: true,
                floorNote: "points on the bottom line are exactly 0: the filters are identical")
        }
        body += "</div>\n"
        body += undrawnNote(run.epochs, xs)
        body += sizeSection(run)
        body += budgetSection(run)
        body += provenance(run)
        return page(title: "csgd-dist report: " + run.directory, body: body)
    }

    /// The per-epoch values the charts leave out (see `SVGChart.drawable`), named by series and
    /// epoch position, as a paragraph under the charts; "" when every value is drawn.
    static func undrawnNote(_ e: [EpochRecord], _ xs: [Double]) -> String {
        let keys: [(String, KeyPath<EpochRecord, Double?>)] = [
            ("train loss", \.trainLoss), ("test loss", \.testLoss), ("train top-1", \.trainTop1),
            ("test top-1", \.testTop1), ("kernel deviation", \.deviationKernels),
            ("vector deviation", \.deviationVectors),
        ]
        var parts: [String] = []
        for (name, key) in keys {
            // Top-1 is drawn ×100, but RunRecords keeps it within [0, 1]: scale is immaterial.
            let at = e.indices.filter { i in
                e[i][keyPath: key].map { !SVGChart.drawable($0) } ?? false
            }
            if at.isEmpty { continue }
            let shown = at.prefix(10).map { String(Int(xs[$0])) }
            parts.append(
                "\(name) at epoch\(at.count > 1 ? "s" : "") \(shown.joined(separator: ", "))"
                    + (at.count > 10 ? " and \(at.count - 10) more" : ""))
        }
        if parts.isEmpty { return "" }
        return "<p class=\"note\">Not drawn (not finite, or beyond ±"
            + String(format: "%.0e", SVGChart.maxMagnitude) + "): "
            + escapeXML(parts.joined(separator: "; ")) + ".</p>\n"
    }

    /// One x position per epoch record, counting across phases and rounds (1, 2, 3, …).
    static func epochAxis(_ e: [EpochRecord]) -> [Double] {
        e.indices.map { Double($0 + 1) }
    }

    /// A dashed line where the phase or round changes (and at the first record).
    static func phaseMarkers(_ e: [EpochRecord], _ xs: [Double]) -> [ChartMarker] {
        var out: [ChartMarker] = []
        for i in e.indices
        where i == 0 || e[i].phase != e[i - 1].phase || e[i].round != e[i - 1].round {
            let label = e[i].phase == .csgd ? "C-SGD round \(e[i].round)" : e[i].phase.rawValue
            out.append(ChartMarker(x: xs[i] - (i == 0 ? 0 : 0.5), label: label))
        }
        return out.count > 1 ? out : []
    }

    static func series(
        _ name: String, _ color: String, _ e: [EpochRecord], _ xs: [Double],
        _ key: KeyPath<EpochRecord, Double?>, scale: Double = 1, dashed: Bool = false
    ) -> ChartSeries {
        ChartSeries(
            name: name, color: color,
            points: zip(e, xs).compactMap { r, x in
                // A non-finite value (a diverged loss is recorded as "NaN") or one beyond
                // ±SVGChart.maxMagnitude leaves a gap, listed by `undrawnNote`.
                r[keyPath: key].flatMap { SVGChart.drawable($0) ? (x, $0 * scale) : nil }
            },
            dashed: dashed)
    }

    static func summary(_ run: RunRecords) -> String {
        var rows: [(String, String)] = []
        let phases = Set(run.epochs.map(\.phase.rawValue)).sorted().joined(separator: ", ")
        rows.append(("epochs", "\(run.epochs.count) (\(phases.isEmpty ? "none" : phases))"))
        if let last = run.epochs.last(where: { $0.testTop1 != nil }), let t = last.testTop1 {
            rows.append(("test top-1, last epoch", pct(t)))
        }
        let seconds = run.epochs.compactMap(\.seconds).reduce(0, +)
        if seconds > 0 { rows.append(("training time (sum of epochs)", duration(seconds))) }
        return table(headers: ["", ""], rows: rows.map { [$0.0, $0.1] }, cls: "summary")
    }

    static func sizeSection(_ run: RunRecords) -> String {
        guard !run.prunes.isEmpty else {
            return "<h2>Pruning</h2>\n<p>This run has no prune record.</p>\n"
        }
        var s = "<h2>Pruning: equivalence check</h2>\n"
        s += table(
            headers: [
                "round", "method", "test top-1 before", "test top-1 after", "Δ",
                "max |logit diff|",
            ],
            rows: run.prunes.map { p in
                [
                    "\(p.round)", p.method.rawValue, p.testTop1Before.map(pct) ?? "–",
                    p.testTop1After.map(pct) ?? "–",
                    p.testTop1Before.flatMap { b in
                        p.testTop1After.map { String(format: "%+.2f pt", 100 * ($0 - b)) }
                    } ?? "–",
                    p.maxLogitDiff.map { String(format: "%.3g", $0) } ?? "–",
                ]
            }, cls: "check")
        if let first = run.prunes.first, let last = run.prunes.last,
            let pb = first.paramsBefore, let pa = last.paramsAfter, let fb = first.flopsBefore,
            let fa = last.flopsAfter
        {
            s += "<h2>Size: before → after</h2>\n"
            s += table(
                headers: ["", "before", "after", "cut"],
                rows: [
                    ["parameters", grouped(pb), grouped(pa), cut(pb, pa)],
                    [
                        "FLOPs / image", String(format: "%.2f M", Double(fb) / 1e6),
                        String(format: "%.2f M", Double(fa) / 1e6), cut(fb, fa),
                    ],
                ], cls: "size")
            s += SVGChart.bars(
                title: "Parameters and FLOPs, after as % of before", yLabel: "% of unpruned",
                categories: ["parameters", "FLOPs / image"],
                sets: [
                    ("before", "#c7c7c7", [100, 100]),
                    (
                        "after", "#ff7f0e",
                        [100 * Double(pa) / Double(pb), 100 * Double(fa) / Double(fb)]
                    ),
                ], minWidth: 360, height: 240)
        }
        if !run.layers.isEmpty {
            s += "<h2>Per-layer widths: before → after</h2>\n"
            s += SVGChart.bars(
                title: "Output channels per conv (and the FC's outputs)", yLabel: "width",
                categories: run.layers.map(\.name),
                sets: [
                    ("before", "#c7c7c7", run.layers.map { Double($0.before) }),
                    ("after", "#1f77b4", run.layers.map { Double($0.after) }),
                ])
        }
        return s
    }

    static func provenance(_ run: RunRecords) -> String {
        var s = "<h2>How this run was produced</h2>\n"
        s +=
            "<h3>Command</h3>\n<pre>\(escapeXML(run.command ?? "(not recorded: run predates command.txt)"))</pre>\n"
        s +=
            "<h3>Resolved config</h3>\n<pre>\(escapeXML(run.configYAML ?? "(no config.yaml)"))</pre>\n"
        return s
    }

    // MARK: - HTML pieces

    static func page(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <title>\(escapeXML(title))</title>
        <style>
        body { font-family: sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
        h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
        .charts svg { margin: 0 1em 1em 0; border: 1px solid #ddd; }
        table { border-collapse: collapse; margin: 0.5em 0 1em; }
        td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
        td:first-child, th:first-child { text-align: left; }
        pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
        </style></head>
        <body>
        \(body)
        </body></html>

        """
    }

    static func table(headers: [String], rows: [[String]], cls: String) -> String {
        var s = "<table class=\"\(cls)\">\n"
        if headers.contains(where: { !$0.isEmpty }) {
            s += "<tr>" + headers.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr>\n"
        }
        for r in rows { s += "<tr>" + r.map { "<td>\(escapeXML($0))</td>" }.joined() + "</tr>\n" }
        return s + "</table>\n"
    }

    static func pct(_ v: Double) -> String { String(format: "%.2f %%", 100 * v) }

    static func cut(_ before: Int, _ after: Int) -> String {
        String(format: "%.2f %%", 100 * (1 - Double(after) / Double(max(before, 1))))
    }

    static func grouped(_ n: Int) -> String {
        let f = NumberFormatter()
        f.numberStyle = .decimal
        f.groupingSeparator = ","
        return f.string(from: NSNumber(value: n)) ?? String(n)
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600
            ? "\(t / 3600) h \((t % 3600) / 60) min" : "\(t / 60) min \(t % 60) s"
    }
}
