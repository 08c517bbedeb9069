// The `csgd-dist` command: parses arguments, wires the library targets together, dispatches.
// No training logic lives here.

import ArgumentParser
import CSGDCore
import Foundation

@main
struct CSGDDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csgd-dist",
        abstract: "Centripetal SGD training and pruning of CNNs, data-parallel over MPI.",
        subcommands: allSubcommands
    )
}
