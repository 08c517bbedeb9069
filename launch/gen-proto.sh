#!/usr/bin/env bash
# Regenerates the committed SwiftProtobuf code from our .proto subsets:
#   Sources/CSGDONNX/onnx.proto           → Sources/CSGDONNX/onnx.pb.swift  (public: CSGDExport
#                                           writes these messages, CSGDImport reads them)
#   Sources/CSGDTensorBoard/event.proto   → Sources/CSGDTensorBoard/event.pb.swift (internal)
# Run it only after editing a .proto; the generated files are committed, so building csgd-dist
# needs neither protoc nor the plugin (and the package uses no build plugin).
#
#   apt-get install protobuf-compiler          # protoc (Debian 12: 3.21.12)
#   bash launch/gen-proto.sh                   # builds protoc-gen-swift 1.39.0 once (~10 min)
#   bash launch/gen-proto.sh Sources/CSGDTensorBoard/event.proto     # just one of them
#   PROTOC_GEN_SWIFT=/path/protoc-gen-swift bash launch/gen-proto.sh  # reuse a plugin
#
# The plugin's version must match the SwiftProtobuf runtime in Package.swift (1.39.0). Its
# source comes from SwiftPM's checkout (.build/checkouts/swift-protobuf) when that holds the
# tag, else from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.39.0
protos=("$@")
[ ${#protos[@]} -gt 0 ] || protos=(Sources/CSGDONNX/onnx.proto Sources/CSGDTensorBoard/event.proto)
plugin=${PROTOC_GEN_SWIFT:-}
if [ -z "$plugin" ]; then
    src=${TMPDIR:-/tmp}/swift-protobuf-$version
    if [ ! -d "$src" ]; then
        origin=https://github.com/apple/swift-protobuf
        checkout=.build/checkouts/swift-protobuf
        if git -C "$checkout" rev-parse -q --verify "refs/tags/$version" > /dev/null 2>&1; then
            origin=file://$PWD/$checkout
        fi
        git clone -q --depth 1 --branch "$version" "$origin" "$src"
    fi
    (cd "$src" && swift build -c release --product protoc-gen-swift)
    plugin=$src/.build/release/protoc-gen-swift
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for proto in "${protos[@]}"; do
    dir=$(dirname "$proto")
    name=$(basename "$proto" .proto)
    # A target holding only generated messages shares them; elsewhere they stay internal.
    visibility=Internal
    [ "$dir" = Sources/CSGDONNX ] && visibility=Public
    protoc --plugin=protoc-gen-swift="$plugin" --swift_out="$out" \
        --swift_opt=Visibility=$visibility --swift_opt=FileNaming=DropPath \
        -I "$dir" "$proto"
    # Generated code follows the plugin's layout, not .swift-format: it must stay out of the
    # lint (CI runs `swift format lint --strict`). protoc-gen-swift 1.39 writes the ignore line
    # itself; add it if a future plugin does not.
    gen=$out/$name.pb.swift
    if ! grep -q "^// swift-format-ignore-file" "$gen"; then
        { echo "// swift-format-ignore-file"; cat "$gen"; } > "$gen.new" && mv "$gen.new" "$gen"
    fi
    cp "$gen" "$dir/$name.pb.swift"
    echo "gen-proto: wrote $dir/$name.pb.swift ($(protoc --version), protoc-gen-swift $version)"
done
