// libjpeg-turbo's TurboJPEG API, for decoding (and, in tests and benchmarks, encoding) JPEG
// images. Only CSGDData imports this module.
#ifndef CSGD_TURBOJPEG_SHIM_H
#define CSGD_TURBOJPEG_SHIM_H
#include <turbojpeg.h>
#endif
