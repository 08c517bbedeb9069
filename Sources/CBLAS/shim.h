// OpenBLAS's CBLAS interface. Only CSGDKernels imports this module.
#ifndef CSGD_CBLAS_SHIM_H
#define CSGD_CBLAS_SHIM_H
#include <cblas.h>
#endif
