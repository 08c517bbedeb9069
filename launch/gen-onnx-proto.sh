#!/usr/bin/env bash
# Regenerates Sources/CSGDONNX/onnx.pb.swift from Sources/CSGDONNX/onnx.proto, with public
# types (CSGDExport writes them, CSGDImport reads them). Run it only after editing the .proto;
# the generated file is committed, so building csgd-dist needs neither protoc nor the plugin
# (and the package uses no build plugin).
#
#   apt-get install protobuf-compiler          # protoc (Debian 12: 3.21.12)
#   bash launch/gen-onnx-proto.sh              # builds protoc-gen-swift 1.39.0 once (~10 min)
#   PROTOC_GEN_SWIFT=/path/protoc-gen-swift bash launch/gen-onnx-proto.sh   # reuse a plugin
#
# The plugin's version must match the SwiftProtobuf runtime in Package.swift (1.39.0).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.39.0
plugin=${PROTOC_GEN_SWIFT:-}
if [ -z "$plugin" ]; then
    src=${TMPDIR:-/tmp}/swift-protobuf-$version
    [ -d "$src" ] || git clone -q --depth 1 --branch "$version" \
        https://github.com/apple/swift-protobuf "$src"
    (cd "$src" && swift build -c release --product protoc-gen-swift)
    plugin=$src/.build/release/protoc-gen-swift
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc --plugin=protoc-gen-swift="$plugin" --swift_out="$out" \
    --swift_opt=Visibility=Public --swift_opt=FileNaming=DropPath \
    -I Sources/CSGDONNX Sources/CSGDONNX/onnx.proto
# Generated code follows the plugin's layout, not .swift-format: it must stay out of the lint
# (CI runs `swift format lint --strict`). protoc-gen-swift 1.39 writes the ignore line itself;
# add it if a future plugin does not.
gen=$out/onnx.pb.swift
if ! grep -q "^// swift-format-ignore-file" "$gen"; then
    { echo "// swift-format-ignore-file"; cat "$gen"; } > "$gen.new" && mv "$gen.new" "$gen"
fi
cp "$gen" Sources/CSGDONNX/onnx.pb.swift
echo "gen-onnx-proto: wrote Sources/CSGDONNX/onnx.pb.swift ($(protoc --version), protoc-gen-swift $version)"
