// Compiled with the same CPU as the Swift targets (`-march=<cpu>` here, `-target-cpu <cpu>`
// there; one LLVM resolves both), so the predefined feature macros below are the features the
// Swift kernels were allowed to use.
#include "CSGDBuildInfo.h"

#ifndef CSGD_TARGET_CPU
#define CSGD_TARGET_CPU "unknown"
#endif

const char *csgd_build_target_cpu(void) { return CSGD_TARGET_CPU; }

#if defined(__SSE4_2__)
#define F_SSE42 " sse4_2"
#else
#define F_SSE42 ""
#endif
#if defined(__AVX__)
#define F_AVX " avx"
#else
#define F_AVX ""
#endif
#if defined(__AVX2__)
#define F_AVX2 " avx2"
#else
#define F_AVX2 ""
#endif
#if defined(__FMA__)
#define F_FMA " fma"
#else
#define F_FMA ""
#endif
#if defined(__AVX512F__)
#define F_AVX512F " avx512f"
#else
#define F_AVX512F ""
#endif
#if defined(__AVX512BW__)
#define F_AVX512BW " avx512bw"
#else
#define F_AVX512BW ""
#endif
#if defined(__AVX512VL__)
#define F_AVX512VL " avx512vl"
#else
#define F_AVX512VL ""
#endif
#if defined(__AVX512VNNI__)
#define F_AVX512VNNI " avx512_vnni"
#else
#define F_AVX512VNNI ""
#endif
#if defined(__AVX512BF16__)
#define F_AVX512BF16 " avx512_bf16"
#else
#define F_AVX512BF16 ""
#endif
#if defined(__ARM_NEON)
#define F_NEON " neon"
#else
#define F_NEON ""
#endif
#if defined(__ARM_FEATURE_FMA)
#define F_ARMFMA " fma"
#else
#define F_ARMFMA ""
#endif
#if defined(__ARM_FEATURE_SVE)
#define F_SVE " sve"
#else
#define F_SVE ""
#endif

// Each feature brings a leading space. One more space in front keeps `+ 1` inside the string
// when no feature is set; otherwise skip both leading spaces.
static const char features[] =
    " " F_SSE42 F_AVX F_AVX2 F_FMA F_AVX512F F_AVX512BW F_AVX512VL F_AVX512VNNI F_AVX512BF16
        F_NEON F_ARMFMA F_SVE;

const char *csgd_build_vector_features(void) { return features + (features[1] ? 2 : 1); }
