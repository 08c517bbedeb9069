// What this build of csgd-dist was compiled for, recorded at compile time (Package.swift sets
// the CPU; see its header). Read by the bench header so every figure says what produced it.
#ifndef CSGD_BUILD_INFO_H
#define CSGD_BUILD_INFO_H

/// The target CPU of the release build: `native`, an LLVM CPU name such as `znver3`, or
/// `generic` (no target flag).
const char *csgd_build_target_cpu(void);

/// The vector features that target enabled, space-separated in /proc/cpuinfo spelling (e.g.
/// "sse4_2 avx avx2 fma"); empty for baseline x86-64.
const char *csgd_build_vector_features(void);

#endif
