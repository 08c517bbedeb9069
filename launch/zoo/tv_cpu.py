"""Make `import torchvision` work next to PyTorch's CPU wheel.

The torchvision wheel from the package index is built against CUDA: its `_C.so` links
libcudart.so.13, libc10_cuda.so and libtorch_cuda.so, which the CPU torch wheel lacks, so
`torchvision.extension` fails to load it (silently; `_has_ops()` is then False). Everything
that registers kernels for the C++ ops is guarded by `_has_ops()` except two decorators in
`torchvision/_meta_registrations.py`:

    @torch.library.register_fake("torchvision::nms")
    @torch.library.register_fake("torchvision::qnms")

which raise `RuntimeError: operator torchvision::nms does not exist` and so abort
`import torchvision`. Defining those two schemas (as `_C.so` declares them) before the
import is enough: classification models never call nms/qnms (a call would raise "no
kernel"). Import this module before torchvision. Where `_C.so` does load (a CUDA torch),
this loads it first and defines nothing.
"""
import importlib.util
import os

import torch

_lib = None


def _extension_loads():
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for d in spec.submodule_search_locations:
        for name in os.listdir(d):
            if name.startswith("_C.") and name.endswith((".so", ".pyd")):
                try:
                    torch.ops.load_library(os.path.join(d, name))
                    return True
                except (OSError, ImportError):
                    return False
    return False


def install():
    global _lib
    if _lib is not None or _extension_loads():
        return
    # FRAGMENT, not DEF: adds to the namespace without claiming it. Keep the reference.
    _lib = torch.library.Library("torchvision", "FRAGMENT")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


install()
