import ArgumentParser

/// Every subcommand of `csgd-dist`, in the order `--help` lists them.
let allSubcommands: [ParsableCommand.Type] = [
    CSGDCommand.self,
    TrainCommand.self,
    PruneCommand.self,
    SensitivityCommand.self,
    EvalCommand.self,
    ReportCommand.self,
    PackCommand.self,
    ExportCommand.self,
    ImportCommand.self,
    BenchCommand.self,
    CheckCommCommand.self,
    ConfigCommand.self,
]
