// The training-side subcommands: train, csgd, prune, eval, config (export: ExportCommand.swift). Each parses its own flags,
// builds the RunConfig (defaults ← --config YAML ← any `--key value` override), starts the
// communicator (rank 0 of 1 without mpirun) and hands over to a Pipelines entry point.

import ArgumentParser
import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDTraining
import Foundation

/// Flags shared by every job: the YAML file and free-form config overrides.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "YAML experiment file (see cluster-configs/).")
    var configPath: String?

    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp(
            "Any config key as a flag, e.g. --epochs 3 --batch-size 128 (see `csgd-dist config --list`).",
            valueName: "--key value"))
    var overrides: [String] = []

    /// Defaults, then the YAML file, then the overrides; validated.
    func resolve() throws -> RunConfig {
        var c = RunConfig()
        if let configPath { c = try RunConfig.load(yamlPath: configPath) }
        try c.apply(overrides: overrides)
        try c.validate()
        return c
    }
}

/// Runs a job body with the communicator (its collective timeout from `config` when given);
/// a `CSGDError` becomes one line on stderr and a non-zero exit of the whole job (MPI_Abort
/// when several ranks run).
///
/// A `preemptible` job (train, csgd) installs the SIGUSR1/SIGTERM handler; when the trainer
/// stops on it (every rank throws `Preempted` after the checkpoint), MPI is finalized and
/// the process exits with `Preemption.exitCode` (3).
func runJob(
    _ config: RunConfig? = nil, preemptible: Bool = false, _ body: (Communicator) throws -> Void
) throws {
    let comm: Communicator
    do {
        comm = try makeCommunicator()
        if preemptible { try Preemption.installHandler() }
    } catch {
        fail(error, comm: nil)
    }
    if let config { comm.collectiveTimeout = config.collectiveTimeoutS }
    do {
        try body(comm)
    } catch is Preempted {
        (comm as? MPICommunicator)?.finalize()
        exit(Preemption.exitCode)
    } catch {
        fail(error, comm: comm)
    }
    (comm as? MPICommunicator)?.finalize()
}

/// Prints `error: …` (and `HINT: …`) and exits non-zero; aborts every rank under MPI.
func fail(_ error: Error, comm: Communicator?) -> Never {
    var text: String
    if let e = error as? CSGDError {
        text = "error: " + e.message
        if let h = e.hint { text += "\nHINT: " + h }
    } else {
        text = "error: \(error)"
    }
    if let comm, comm.size > 1 { comm.abort(code: 1, message: text) }
    FileHandle.standardError.write(Data((text + "\n").utf8))
    exit(1)
}

/// How a train or csgd job treats its out_dir: resume (plain or auto) or start over.
struct StartOptions: ParsableArguments {
    @Flag(
        help: """
            Resume from <out_dir>/checkpoint.safetensors, or from the newest older checkpoint \
            in <out_dir>/checkpoints/ that verifies if it is damaged. `--resume auto` resumes \
            when out_dir holds a checkpoint and starts fresh otherwise (the sbatch default); a \
            checkpoint of another experiment (phase or model) is an error, and --from only \
            applies to a fresh start.
            """)
    var resume = false
    /// `--resume auto`, rewritten to this flag before parsing (see `CSGDDist.main()`).
    @Flag(name: .customLong(resumeAutoFlag), help: .hidden) var resumeAuto = false
    @Flag(
        help: """
            Start over in an out_dir that holds a run: its records and models are moved to \
            <out_dir>/overwritten-<time>/.
            """)
    var overwrite = false

    func validate() throws {
        if resumeAuto && (resume || overwrite) {
            throw ValidationError("--resume auto excludes --resume and --overwrite")
        }
    }

    /// Whether to resume, and the `--from` model that applies: with `--resume auto`, a run
    /// that resumes ignores `--from` (it is where a fresh run starts).
    func resolve(comm: Communicator, config: RunConfig, from: String?) -> (Bool, String?) {
        guard resumeAuto else { return (resume, from) }
        let resume = Pipelines.autoResume(comm: comm, config: config)
        return (resume, resume ? nil : from)
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a ResNet normally (no C-SGD); writes model.safetensors.")
    @OptionGroup var options: ConfigOptions
    @OptionGroup var start: StartOptions
    @Option(help: "Start from this model file instead of a fresh initialisation.") var from: String?

    func run() throws {
        let c = try resolveOrExit(options)
        try runJob(c, preemptible: true) {
            let (resume, from) = start.resolve(comm: $0, config: c, from: from)
            try Pipelines.train(
                comm: $0, config: c, resume: resume, from: from, overwrite: start.overwrite)
        }
    }
}

struct CSGDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csgd",
        abstract: "Centripetal SGD rounds, then prune with no finetune; writes pruned.safetensors.",
        discussion: """
            Each round clusters every layer to its target width (rounds: 13/16,11/16,5/8 of the \
            original widths), trains with the centripetal update, and prunes; the pruned net \
            is checked against the unpruned one on the test set. --widen 2 trains a 2x wider \
            net and squeezes it back to the original widths.
            """)
    @OptionGroup var options: ConfigOptions
    @OptionGroup var start: StartOptions
    @Option(help: "Base model to start from (e.g. a `train` result); default: from scratch.")
    var from: String?

    func run() throws {
        let c = try resolveOrExit(options)
        try runJob(c, preemptible: true) {
            let (resume, from) = start.resolve(comm: $0, config: c, from: from)
            try Pipelines.csgd(
                comm: $0, config: c, resume: resume, from: from, overwrite: start.overwrite)
        }
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Prune a C-SGD checkpoint with its clusters, or any model by L1 magnitude.")
    @OptionGroup var options: ConfigOptions
    @Option(help: "Model or checkpoint file to prune.") var input: String
    @Option(help: "csgd (merge the checkpoint's clusters) or magnitude (L1-norm baseline).")
    var method = PruneMethod.csgd
    @Option(
        help: "Magnitude target: 5/8, internal:0.7, 16:10,32:20,64:40 or one width per conv.",
        transform: { try PruneTarget(parsing: $0) })
    var target: PruneTarget?
    @Option(
        help: """
            Output model file. Its folder receives the prune's metrics.jsonl, config.yaml and \
            command.txt unless --out-dir is given.
            """)
    var output: String
    @Flag(
        help: """
            Write into an out_dir that holds a run: its records and models are moved to \
            <out_dir>/overwritten-<time>/.
            """)
    var overwrite = false

    func run() throws {
        var c = try resolveOrExit(options)
        // A prune is its own run: never append to (or overwrite the config of) the run whose
        // out_dir a shared YAML file names.
        if !options.overrides.contains(where: { $0 == "--out-dir" || $0.hasPrefix("--out-dir=") }) {
            let folder = URL(fileURLWithPath: output).deletingLastPathComponent().path
            c.outDir = folder
        }
        try runJob(c) {
            try refuseOutputOverInputs(output, flag: "--output", inputs: [input])
            return try Pipelines.prune(
                comm: $0, config: c, input: input, method: method, target: target, output: output,
                overwrite: overwrite)
        }
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate any model file on the test set.")
    @OptionGroup var options: ConfigOptions
    @Option(help: "Model or checkpoint file.") var input: String
    @Option(
        help: ArgumentHelp(
            "Also write the evaluated test images, labels and logits to this safetensors file "
                + "(to compare another runtime, e.g. an ONNX export, on the same inputs).",
            valueName: "FILE"))
    var dumpLogits: String?

    func run() throws {
        let c = try resolveOrExit(options)
        try runJob(c) {
            if let dumpLogits {
                try refuseOutputOverInputs(dumpLogits, flag: "--dump-logits", inputs: [input])
            }
            return try Pipelines.eval(comm: $0, config: c, input: input, dumpLogits: dumpLogits)
        }
    }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "List the config keys, or print a resolved config.")
    @OptionGroup var options: ConfigOptions
    @Flag(help: "List every key with its type, default and meaning.") var list = false

    func run() throws {
        if list {
            print(RunConfig.describeKeys())
            return
        }
        print(try resolveOrExit(options).yaml(), terminator: "")
    }
}

/// Resolves the config; a bad key or value is one line on stderr (rank 0 only under mpirun:
/// every rank fails the same way) and exit code 2 on every rank.
func resolveOrExit(_ options: ConfigOptions) throws -> RunConfig {
    do {
        return try options.resolve()
    } catch let e as CSGDError {
        var text = "error: " + e.message
        if let h = e.hint { text += "\nHINT: " + h }
        if isLaunchRoot { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        throw ExitCode(2)
    }
}
