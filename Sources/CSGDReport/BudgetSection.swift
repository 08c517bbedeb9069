// The budget part of a run report: when the run folder holds allocation.json (a csgd run or
// prune with target_flops / target_params), the sensitivity curves each group's widths were
// chosen from (Δloss against the fraction of the width kept, one line per group) and the
// allocated widths.

import CSGDCentripetal
import CSGDCore
import Foundation

/// The contents of `<out_dir>/allocation.json`.
public struct BudgetRecord: Codable, Sendable {
    /// The widths chosen.
    public var allocation: Allocation
    /// The table they were chosen from.
    public var sensitivity: SensitivityTable

    /// Reads `<directory>/allocation.json` if present; a file that does not decode, or holds
    /// more groups or rows than a report draws, is an error naming it.
    static func read(directory: String) throws -> BudgetRecord? {
        let path = directory + "/allocation.json"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let bytes = try readWholeFile(path, limit: RunRecords.maxMetricsBytes)
        let record: BudgetRecord
        do {
            record = try JSONDecoder().decode(BudgetRecord.self, from: Data(bytes))
        } catch {
            throw CSGDError("\(path): not an allocation record (\(error.localizedDescription))")
        }
        let rows = record.sensitivity.groups.reduce(0) { $0 + $1.rows.count }
        if record.allocation.groups.count > RunRecords.maxLayers
            || record.sensitivity.groups.count > RunRecords.maxLayers || rows > 64 * 4096
        {
            throw CSGDError("\(path): more groups or rows than a report draws")
        }
        return record
    }
}

extension HTMLReport {
    static let palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ]

    /// "" when the run has no allocation record.
    static func budgetSection(_ run: RunRecords) -> String {
        guard let b = run.budget else { return "" }
        let a = b.allocation
        var s = "<h2>Budget allocation</h2>\n"
        s +=
            "<p>" + escapeXML(a.table().split(separator: "\n").first.map(String.init) ?? "")
            + ". Each group's widths were chosen from the sensitivity below: the loss increase "
            + "when that group alone is merged to cluster means (no training), on "
            + "\(b.sensitivity.images) training images.</p>\n"
        let series = b.sensitivity.groups.enumerated().map { i, g in
            ChartSeries(
                name: g.name, color: palette[i % palette.count],
                points: g.rows.map { (Double($0.width) / Double(max(g.width, 1)), $0.deltaLoss) },
                dashed: i >= palette.count)
        }
        s += "<div class=\"charts\">\n"
        s += SVGChart.lines(
            title: "Sensitivity: Δloss when one group is merged", xLabel: "fraction of width kept",
            yLabel: "Δloss", series: series, width: 760, height: 360)
        s += "</div>\n"
        s += table(
            headers: ["group", "width", "allocated", "Δloss (alone)"],
            rows: a.groups.map { e in
                [
                    e.name, "\(e.width)", "\(e.allocated)",
                    e.fixed ? "fixed" : String(format: "%.4f", e.deltaLoss),
                ]
            }, cls: "layers")
        return s
    }
}
