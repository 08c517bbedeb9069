import ArgumentParser

/// Every subcommand of `csgd-dist`, in the order `--help` lists them.
let allSubcommands: [ParsableCommand.Type] = [
    CheckCommCommand.self
]
