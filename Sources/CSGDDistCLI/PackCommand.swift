// `csgd-dist pack SRC_DIR OUT_DIR`: turns image folders into a few large record files plus an
// index, which a cluster file system serves far better than a million small files.

import ArgumentParser
import CSGDCore
import CSGDData
import Foundation

/// Packs an ImageFolder tree (train/ and val/, or one folder of class folders).
struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Pack JPEG class folders into large record files (shards + index.tsv).",
        discussion: """
            If SRC_DIR holds train/ and/or val/, each is packed to the same name under OUT_DIR; \
            otherwise SRC_DIR itself (a folder of class folders) is packed into OUT_DIR. Files \
            keep the folder order, so `dataset: imagefolder` with `data_dir: OUT_DIR` trains on \
            exactly the samples of the folder form. Every file is written to a temp name and \
            renamed, the index last.
            """)

    @Argument(help: "Folder with train/ and val/ of class folders (or one class-folder tree).")
    var source: String

    @Argument(help: "Output folder.") var output: String

    @Option(help: "Start a new shard file after this many MiB.") var shardSizeMb = 1024

    func validate() throws {
        if !(1...(1 << 20)).contains(shardSizeMb) {
            throw ValidationError("--shard-size-mb must be in 1...1048576 (got \(shardSizeMb))")
        }
    }

    func run() throws {
        do {
            let t = Date()
            for s in try ImageFolderPacker.pack(
                source: source, output: output, shardBytes: shardSizeMb << 20)
            {
                print(
                    "packed \(s.images) images of \(s.classes) classes into \(s.shards) shard(s), "
                        + String(format: "%.1f MiB: ", Double(s.bytes) / 1_048_576) + s.output)
            }
            print(String(format: "pack: done in %.1f s", Date().timeIntervalSince(t)))
        } catch {
            fail(error, comm: nil)
        }
    }
}
