// zlib, for reading gzip'd IDX files directly. Only CSGDData imports this module.
#ifndef CSGD_ZLIB_SHIM_H
#define CSGD_ZLIB_SHIM_H
#include <zlib.h>
#endif
