// The mode enums as command-line values: ArgumentParser parses them, lists the allowed values in
// `--help` and refuses anything else with one line, so no command re-validates a mode itself.

import ArgumentParser
import CSGDConfig
import CSGDTraining

extension UpdateMode: ExpressibleByArgument {}
extension AllreduceMode: ExpressibleByArgument {}
extension PruneMethod: ExpressibleByArgument {}
