#!/usr/bin/env python3
"""The model zoo check's Python side (driven by launch/zoo-check.sh).

Subcommands:
  export --out DIR [--models m1,m2] [--exporters dynamo,legacy]
      torchvision / timm classifiers with random weights (seed 0, num_classes 10, BatchNorm
      statistics randomised so BN is not the identity), exported to DIR/<model>.<exporter>.onnx
      by torch.onnx.export's default (dynamo) exporter and by the legacy one with BN kept;
      DIR/manifest.json records model, source, exporter, image size, ok/error and
      onnxruntime's max |Δ| to PyTorch on the export input.
  ops DIR [--report FILE]
      op histogram of every .onnx in DIR (DIR/ops.json), the ops outside csgd-dist's import
      set per model/exporter, and the attributes that matter (ceil-mode pools, dilated /
      non-square / asymmetric convs, reduce axes, broadcast shapes, split/slice axes, ...).
  fmnist-folder --out DIR --size S --train N --test M
      Fashion-MNIST as an RGB JPEG ImageFolder tree (DIR/train/<class>/, DIR/val/<class>/).
  ort-compare --onnx F --dump G [--rtol 1e-4]
      onnxruntime on the images of `csgd-dist eval --dump-logits G`, compared with its logits
      (max |Δ| over the largest |logit|; exit 1 above rtol).
  table --work DIR ...   the zoo-check Markdown table from launch/zoo-check.sh's work folders.
  list [--models ...]    model keys and their input sizes.

Model keys carry the source: tv_<name> (torchvision), timm_<name> (timm). --models takes keys
or bare names (a bare name selects every source that has it).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections import Counter, OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))

TORCHVISION = [
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "vgg16",
    "alexnet", "squeezenet1_1", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "shufflenet_v2_x0_5", "mnasnet0_5", "efficientnet_b0",
    "regnet_x_400mf", "regnet_y_400mf", "googlenet", "convnext_tiny",
]
TIMM = [
    "resnet18d", "resnet26", "seresnet18", "ecaresnet26t", "cspresnet50", "dla34", "dpn68",
    "ghostnet_100", "mixnet_s", "rexnet_100", "hrnet_w18_small", "vovnet39a",
    "res2net50_14w_8s", "repvgg_a0", "mobilenetv3_large_100", "efficientnet_lite0",
    "tf_efficientnet_b0", "densenet121", "selecsls42b", "tinynet_a",
]
MODELS = OrderedDict(
    [("tv_" + n, ("torchvision", n)) for n in TORCHVISION]
    + [("timm_" + n, ("timm", n)) for n in TIMM]
)
QUICK = ["tv_resnet18", "tv_mobilenet_v3_small", "tv_shufflenet_v2_x0_5", "tv_efficientnet_b0"]
EXPORTERS = ["dynamo", "legacy"]

# Input side S per model; 64 unless the architecture needs more. torchvision's VGG and
# AlexNet end their features with AdaptiveAvgPool2d((7, 7)) / ((6, 6)), and the legacy exporter
# refuses an adaptive pool whose input side is not a multiple of its output side ("output size
# that are not factor of input size"): at S = 64 their feature maps are 2x2 (VGG) and 1x1
# (AlexNet). The smallest S that makes them 7x7 (VGG, S/32) and 6x6 (AlexNet, 223..226) is 224
# for both. Everything else exports at 64 (googlenet and densenet121 included).
IMAGE_SIZE = {"tv_vgg11_bn": 224, "tv_vgg16": 224, "tv_alexnet": 224}
DEFAULT_SIZE = 64

# What csgd-dist's ONNX import reads today (README, "Bring your own model").
SUPPORTED = {
    "Conv", "BatchNormalization", "Relu", "Clip", "Add", "Concat", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Flatten", "Reshape", "Shape", "Gather", "Unsqueeze", "Gemm",
    "MatMul", "Identity", "Dropout", "Constant",
}


def select_models(spec):
    if not spec:
        return list(MODELS)
    if spec == "quick":
        return list(QUICK)
    out = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        if name == "quick":
            hits = QUICK
        elif name in MODELS:
            hits = [name]
        else:
            hits = [k for k, (_, n) in MODELS.items() if n == name]
        if not hits:
            sys.exit(f"zoo: unknown model {name!r} (keys: {', '.join(MODELS)})")
        out += [h for h in hits if h not in out]
    return out


def image_size(key):
    if os.environ.get("ZOO_SIZE"):  # export --size: one size for every model (experiments)
        return int(os.environ["ZOO_SIZE"])
    return IMAGE_SIZE.get(key, DEFAULT_SIZE)


# ---------------------------------------------------------------------------------------
# export

def build(key):
    import tv_cpu  # noqa: F401  (before torchvision, which timm imports too: see tv_cpu.py)

    source, name = MODELS[key]
    if source == "torchvision":
        import torchvision

        kwargs = {"num_classes": 10}
        if name == "googlenet":
            kwargs.update(aux_logits=False, init_weights=True)
        return getattr(torchvision.models, name)(weights=None, **kwargs)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=10)


def randomise_bn(model):
    import torch

    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
                n += 1
    return n


def export_one(key, exporter, out_dir):
    """Runs in a child process: builds, exports, checks with onnxruntime. Prints one JSON line."""
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    source, name = MODELS[key]
    s = image_size(key)
    rec = {"model": key, "name": name, "source": source, "exporter": exporter, "image_size": s,
           "file": f"{key}.{exporter}.onnx"}
    path = os.path.join(out_dir, rec["file"])
    for p in (path, path + ".data"):
        if os.path.exists(p):
            os.remove(p)
    torch.manual_seed(0)
    model = build(key)
    rec["bn_layers"] = randomise_bn(model)
    model.eval()
    x = torch.randn(1, 3, s, s)
    with torch.no_grad():
        ref = model(x).numpy()
    rec["params"] = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    try:
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), path)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False, do_constant_folding=False,
                              input_names=["input"], dynamic_axes={"input": {0: "N"}})
    except Exception as e:  # one line: the exception's first line
        msg = (str(e).strip().splitlines() or [""])[0]
        rec.update(ok=False, error=f"{type(e).__name__}: {msg}"[:400])
        return rec
    rec["export_s"] = round(time.time() - t0, 1)
    rec["external_data"] = os.path.exists(path + ".data")
    try:
        import onnx

        m = onnx.load(path, load_external_data=False)
        rec["opset"] = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
        rec["ir_version"] = m.ir_version
        inp = m.graph.input[0].type.tensor_type.shape.dim
        rec["input_shape"] = [d.dim_param or d.dim_value for d in inp]
    except Exception as e:
        rec["onnx_load_error"] = f"{type(e).__name__}: {e}"[:300]
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        rec["ort_max_abs_diff"] = float(np.max(np.abs(got - ref)))
        rec["max_abs_logit"] = float(np.max(np.abs(ref)))
    except Exception as e:
        rec["ort_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    rec["ok"] = True
    return rec


def cmd_export(a):
    os.makedirs(a.out, exist_ok=True)
    if a.size:
        os.environ["ZOO_SIZE"] = str(a.size)
    keys = select_models(a.models)
    exporters = [e.strip() for e in a.exporters.split(",") if e.strip()]
    for e in exporters:
        if e not in EXPORTERS:
            sys.exit(f"zoo: unknown exporter {e!r} (dynamo, legacy)")
    man_path = os.path.join(a.out, "manifest.json")
    manifest = {}
    if os.path.exists(man_path):
        with open(man_path) as f:
            manifest = {(r["model"], r["exporter"]): r for r in json.load(f)}
    logs = os.path.join(a.out, "logs")
    os.makedirs(logs, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    failed = 0
    for key in keys:
        for exporter in exporters:
            f = os.path.join(a.out, f"{key}.{exporter}.onnx")
            old = manifest.get((key, exporter))
            if (a.skip_existing and old and old.get("ok") and os.path.exists(f)
                    and old.get("image_size") == image_size(key)):
                print(f"{key:28s} {exporter:6s} kept", flush=True)
                continue
            log = os.path.join(logs, f"{key}.{exporter}.log")
            t0 = time.time()
            with open(log, "w") as lf:
                try:
                    p = subprocess.run(
                        [sys.executable, os.path.abspath(__file__), "_export-one", key, exporter,
                         a.out], stdout=subprocess.PIPE, stderr=lf, env=env, text=True,
                        timeout=a.timeout)
                    line = [l for l in p.stdout.splitlines() if l.startswith("{")]
                    rec = json.loads(line[-1]) if line else None
                    if rec is None:
                        tail = open(log).read().strip().splitlines()
                        rec = {"ok": False, "error": f"exit {p.returncode}: "
                               + (tail[-1] if tail else "no output")[:300]}
                except subprocess.TimeoutExpired:
                    rec = {"ok": False, "error": f"timeout after {a.timeout} s"}
            source, name = MODELS[key]
            base = {"model": key, "name": name, "source": source, "exporter": exporter,
                    "image_size": image_size(key), "file": f"{key}.{exporter}.onnx"}
            base.update(rec)
            base["seconds"] = round(time.time() - t0, 1)
            manifest[(key, exporter)] = base
            status = "ok" if base["ok"] else "FAILED " + base.get("error", "")
            extra = ""
            if base.get("ok"):
                extra = (f" opset {base.get('opset')} ort Δ {base.get('ort_max_abs_diff', 'n/a')}"
                         + (" +.data" if base.get("external_data") else "")
                         + (f" ORT ERROR {base['ort_error']}" if "ort_error" in base else ""))
            else:
                failed += 1
            print(f"{key:28s} {exporter:6s} S={base['image_size']:<4d} {status}{extra} "
                  f"({base['seconds']} s)", flush=True)
            order = {k: i for i, k in enumerate(MODELS)}
            recs = sorted(manifest.values(),
                          key=lambda r: (order.get(r["model"], 999), r["exporter"]))
            tmp = man_path + ".tmp"
            with open(tmp, "w") as f2:
                json.dump(recs, f2, indent=1)
            os.replace(tmp, man_path)
    return 0


# ---------------------------------------------------------------------------------------
# ops report

def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _walk(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.g is not None and len(a.g.node):
                yield from _walk(a.g)
            for g in a.graphs:
                yield from _walk(g)


def partial_window(shape, at):
    """Whether a ceil-mode pool's output is larger than floor mode's (a partial last window)."""
    if not shape or len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[2:]):
        return "input size unknown"
    k = at.get("kernel_shape") or [1, 1]
    st = at.get("strides") or [1, 1]
    pads = at.get("pads") or [0, 0, 0, 0]
    out, floor = [], []
    partial = False
    for i, size in enumerate(shape[2:]):
        span = size + pads[i] + pads[i + 2] - k[i]
        fl = span // st[i] + 1
        ce = -(-span // st[i]) + 1
        if ce > fl and (ce - 1) * st[i] >= size + pads[i]:  # PyTorch drops a window starting in the pad
            ce -= 1
        partial |= ce > fl
        out.append(str(ce))
        floor.append(str(fl))
    io = "x".join(map(str, shape[2:])) + " -> " + "x".join(out)
    return (f"adds a partial window ({io}; floor mode {'x'.join(floor)})" if partial
            else f"no partial window ({io})")


def broadcast_pattern(n, shapes, consts, verbose):
    """An elementwise op's operand shapes as a pattern: [N,C,1,1] x [N,C,H,W], scalar c, ..."""
    ins = [shapes.get(i) for i in n.input]
    vals = [consts.get(i) for i in n.input]
    if any(s is None for s in ins):
        return " x ".join("?" if s is None else "[" + ",".join(map(str, s)) + "]" for s in ins)
    rank = max(len(s) for s in ins)
    out = []
    for j in range(rank):
        dims = [s[j - (rank - len(s))] for s in ins if j - (rank - len(s)) >= 0]
        big = [d for d in dims if d != 1]
        out.append(big[0] if big else 1)
    names = {4: "NCHW", 3: "CHW", 2: "NC", 1: "C"}.get(rank, None)
    parts = []
    for s, v in zip(ins, vals):
        if v is not None and (not isinstance(v, list) or len(v) == 1 or not s or all(d == 1 for d in s)):
            flat = v
            while isinstance(flat, list) and len(flat) == 1:
                flat = flat[0]
            parts.append(f"const {flat:.6g}" if isinstance(flat, (int, float)) else f"const {flat}")
            continue
        off = rank - len(s)
        sym = []
        for j, d in enumerate(s):
            if names and d == out[j + off] and d != 1:
                sym.append(names[j + off])
            else:
                sym.append(str(d))
        parts.append("[" + ",".join(sym) + "]")
    pat = " x ".join(parts)
    if verbose:
        pat += "   (" + " x ".join("[" + ",".join(map(str, s)) + "]" for s in ins) + ")"
    return pat


def analyse(path, verbose=False):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path, load_external_data=False)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    try:
        mi = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception:
        mi = m
    shapes = {}
    for vi in list(mi.graph.value_info) + list(mi.graph.input) + list(mi.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?")
                               for d in t.shape.dim]
    consts = {}
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
        if init.data_location != onnx.TensorProto.EXTERNAL and int(
                __import__("numpy").prod(init.dims or [1])) <= 16:
            try:
                consts[init.name] = numpy_helper.to_array(init).tolist()
            except Exception:
                pass
    nodes = list(_walk(m.graph))
    for fn in m.functions:
        nodes += list(fn.node)
    for n in nodes:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t is not None:
                    shapes[n.output[0]] = list(a.t.dims)
                    try:
                        arr = numpy_helper.to_array(a.t)
                        if arr.size <= 16:
                            consts[n.output[0]] = arr.tolist()
                    except Exception:
                        pass
                elif a.name in ("value_ints", "value_int", "value_float", "value_floats"):
                    consts[n.output[0]] = onnx.helper.get_attribute_value(a)
    hist = Counter(("" if n.domain in ("", "ai.onnx") else n.domain + ":") + n.op_type
                   for n in nodes)
    notes = Counter()

    def shp(name):
        s = shapes.get(name)
        return "?" if s is None else "[" + ",".join(str(d) for d in s) + "]"

    def val(name):
        return consts.get(name)

    for n in nodes:
        at = _attrs(n)
        op = n.op_type
        if op in ("MaxPool", "AveragePool"):
            if at.get("ceil_mode", 0):
                notes[f"{op} ceil_mode=1 k={at.get('kernel_shape')} s={at.get('strides')}"
                      f" pads={at.get('pads')}: "
                      + partial_window(shapes.get(n.input[0]), at)] += 1
            if op == "AveragePool" and at.get("count_include_pad", 0):
                notes["AveragePool count_include_pad=1"] += 1
            pads = at.get("pads")
            if pads and len(pads) == 4 and pads[:2] != pads[2:]:
                notes[f"{op} asymmetric pads {pads}"] += 1
            ks = at.get("kernel_shape")
            if ks and len(set(ks)) > 1:
                notes[f"{op} non-square kernel {ks}"] += 1
            if at.get("dilations") and any(d != 1 for d in at["dilations"]):
                notes[f"{op} dilations {at['dilations']}"] += 1
            if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                notes[f"{op} auto_pad={at['auto_pad']}"] += 1
        elif op == "Conv":
            d = at.get("dilations")
            if d and any(v != 1 for v in d):
                notes[f"Conv dilations {d}"] += 1
            ks = at.get("kernel_shape") or (shapes.get(n.input[1]) or [])[2:]
            if ks and len(ks) != 2:
                notes[f"Conv {len(ks)}-D kernel {list(ks)} in={shp(n.input[0])}"] += 1
            elif ks and len(set(ks)) > 1:
                notes[f"Conv non-square kernel {list(ks)}"] += 1
            pads = at.get("pads")
            if pads and len(pads) == 4 and pads[:2] != pads[2:]:
                notes[f"Conv asymmetric pads {pads}"] += 1
            if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                notes[f"Conv auto_pad={at['auto_pad']}"] += 1
            if at.get("group", 1) != 1:
                w = shapes.get(n.input[1])
                kind = "depthwise" if w and w[1] == 1 else "grouped"
                notes[f"Conv {kind} (group>1)"] += 1
        elif op.startswith("Reduce") or op in ("GlobalMaxPool",):
            axes = at.get("axes")
            if axes is None and len(n.input) > 1:
                axes = val(n.input[1])
            notes[f"{op} axes={axes} keepdims={at.get('keepdims', 1)} in={shp(n.input[0])}"] += 1
        elif op in ("Mul", "Div", "Sub", "Pow", "Add") and op != "Add" or (
                op == "Add" and shapes.get(n.input[0]) != shapes.get(n.input[1])):
            notes[f"{op} {broadcast_pattern(n, shapes, consts, verbose)}"] += 1
        elif op == "Split":
            sp = at.get("split")
            if sp is None and len(n.input) > 1:
                sp = val(n.input[1])
            notes[f"Split axis={at.get('axis', 0)} split={sp} num_outputs="
                  f"{at.get('num_outputs', len(n.output))} in={shp(n.input[0])}"] += 1
        elif op == "Slice":
            parts = [val(i) if i else None for i in n.input[1:]]
            notes[f"Slice starts/ends/axes/steps={parts} in={shp(n.input[0])}"] += 1
        elif op == "Transpose":
            notes[f"Transpose perm={at.get('perm')} in={shp(n.input[0])}"] += 1
        elif op == "Resize":
            notes[f"Resize mode={at.get('mode')} coord={at.get('coordinate_transformation_mode')}"
                  f" nearest={at.get('nearest_mode')}"] += 1
        elif op == "Upsample":
            notes[f"Upsample mode={at.get('mode')}"] += 1
        elif op == "Reshape":
            notes[f"Reshape {shp(n.input[0])} -> {val(n.input[1]) if len(n.input) > 1 else '?'}"
                  f" (allowzero={at.get('allowzero', 0)})"] += 1
        elif op == "Flatten":
            notes[f"Flatten axis={at.get('axis', 1)}"] += 1
        elif op == "Concat":
            notes[f"Concat axis={at.get('axis')}"] += 1
        elif op == "Gemm":
            notes[f"Gemm transB={at.get('transB', 0)} alpha={at.get('alpha', 1.0)}"
                  f" beta={at.get('beta', 1.0)}"] += 1
        elif op == "MatMul":
            notes[f"MatMul {shp(n.input[0])} x {shp(n.input[1])}"] += 1
        elif op == "BatchNormalization":
            if at.get("training_mode", 0):
                notes["BatchNormalization training_mode=1"] += 1
        elif op == "Clip":
            lo = val(n.input[1]) if len(n.input) > 1 and n.input[1] else at.get("min")
            hi = val(n.input[2]) if len(n.input) > 2 and n.input[2] else at.get("max")
            notes[f"Clip min={lo} max={hi}"] += 1
        elif op in ("Gather", "Unsqueeze", "Squeeze", "Expand", "Tile", "Pad", "Cast"):
            extra = ""
            if op == "Gather":
                extra = f" axis={at.get('axis', 0)} idx={val(n.input[1])}"
            elif op in ("Unsqueeze", "Squeeze"):
                extra = f" axes={at.get('axes', val(n.input[1]) if len(n.input) > 1 else None)}"
            elif op == "Pad":
                extra = f" mode={at.get('mode', b'constant')} pads={val(n.input[1]) if len(n.input) > 1 else at.get('pads')}"
            elif op == "Cast":
                extra = f" to={at.get('to')}"
            notes[f"{op}{extra} in={shp(n.input[0])}"] += 1
        elif op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization"):
            notes[f"{op} axis={at.get('axis', -1)} eps={at.get('epsilon')} in={shp(n.input[0])}"] += 1
        elif op in ("HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Gelu"):
            notes[f"{op} " + " ".join(f"{k}={v}" for k, v in sorted(at.items()))] += 1
    convs = [n for n in nodes if n.op_type == "Conv"]
    biased = sum(1 for n in convs if len(n.input) > 2 and n.input[2])
    if convs and not hist.get("BatchNormalization"):
        notes[f"no BatchNormalization nodes ({biased}/{len(convs)} convs biased)"] += 1
    initial = {i.name for i in m.graph.initializer}
    external = sum(1 for i in m.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL)
    inp = [i for i in m.graph.input if i.name not in initial]
    return {
        "opset": opset, "ir_version": m.ir_version, "nodes": len(nodes),
        "functions": len(m.functions), "external_initializers": external,
        "initializers": len(m.graph.initializer),
        "convs": len(convs), "convs_with_bias": biased,
        "inputs": [f"{i.name}{shp(i.name)}" for i in inp],
        "ops": dict(sorted(hist.items(), key=lambda kv: -kv[1])),
        "unsupported": sorted(k for k in hist if k not in SUPPORTED),
        "notes": dict(sorted(notes.items())),
    }


def cmd_ops(a):
    files = sorted(f for f in os.listdir(a.dir) if f.endswith(".onnx"))
    manifest = {}
    mp = os.path.join(a.dir, "manifest.json")
    if os.path.exists(mp):
        with open(mp) as f:
            manifest = {r["file"]: r for r in json.load(f)}
    res = OrderedDict()
    for f in files:
        try:
            res[f] = analyse(os.path.join(a.dir, f), a.verbose)
        except Exception as e:
            res[f] = {"error": f"{type(e).__name__}: {e}"[:300]}
    with open(os.path.join(a.dir, "ops.json"), "w") as fp:
        json.dump(res, fp, indent=1)
    lines = []
    P = lines.append
    P(f"# zoo op report: {len(files)} ONNX files in {a.dir} ({time.strftime('%Y-%m-%d %H:%M')})")
    P("# supported: " + " ".join(sorted(SUPPORTED)))
    failed = [r for r in manifest.values() if not r.get("ok")]
    if failed:
        P("")
        P("## export failures")
        for r in failed:
            P(f"  {r['model']}.{r['exporter']} (S={r['image_size']}): {r.get('error')}")
    for exporter in EXPORTERS:
        sel = {f: r for f, r in res.items() if f.endswith(f".{exporter}.onnx") and "ops" in r}
        if not sel:
            continue
        tot = Counter()
        models_with = Counter()
        for r in sel.values():
            tot.update(r["ops"])
            models_with.update(r["ops"].keys())
        P("")
        P(f"## {exporter}: {len(sel)} files; opsets {sorted({r['opset'] for r in sel.values()})};"
          f" files with external data: {sum(1 for r in sel.values() if r['external_initializers'])}")
        P("op histogram (nodes, files):")
        for op, c in tot.most_common():
            mark = "" if op in SUPPORTED else "   <-- not supported"
            P(f"  {op:28s} {c:6d} {models_with[op]:4d}{mark}")
        blockers = Counter()
        for r in sel.values():
            blockers.update(r["unsupported"])
        clean = [f for f, r in sel.items() if not r["unsupported"]]
        P(f"files using only supported ops ({len(clean)}): "
          + ", ".join(f.rsplit('.', 2)[0] for f in clean))
        P("unsupported ops by number of files they block: "
          + ", ".join(f"{op} {c}" for op, c in blockers.most_common()))
    P("")
    P("## blockers per model (ops outside the supported set; '-' = none, 'n/a' = no file)")
    keys = OrderedDict()
    for f in res:
        keys.setdefault(f.rsplit(".", 2)[0], None)
    w = max([len(k) for k in keys] + [5])
    P(f"  {'model':{w}s}  {'legacy':50s}  dynamo")
    for k in keys:
        cells = []
        for e in ("legacy", "dynamo"):
            r = res.get(f"{k}.{e}.onnx")
            if r is None:
                man = manifest.get(f"{k}.{e}.onnx")
                cells.append("EXPORT FAILED" if man and not man.get("ok") else "n/a")
            elif "error" in r:
                cells.append("unreadable")
            else:
                cells.append(" ".join(r["unsupported"]) or "-")
        P(f"  {k:{w}s}  {cells[0]:50s}  {cells[1]}")
    P("")
    P("## dynamo vs legacy: ops that only one of a model's two exports uses (number of models)")
    only = {"dynamo": Counter(), "legacy": Counter()}
    pairs = 0
    for k in keys:
        d, l = res.get(f"{k}.dynamo.onnx"), res.get(f"{k}.legacy.onnx")
        if not d or not l or "ops" not in d or "ops" not in l:
            continue
        pairs += 1
        only["dynamo"].update(set(d["ops"]) - set(l["ops"]))
        only["legacy"].update(set(l["ops"]) - set(d["ops"]))
    P(f"  {pairs} models with both exports")
    for e in ("dynamo", "legacy"):
        P(f"  only in {e}: " + (", ".join(f"{op} {c}" for op, c in only[e].most_common()) or "-"))
    P("")
    P("## per file: unsupported ops, then notable attributes / patterns (count)")
    for f, r in res.items():
        P("")
        if "error" in r:
            P(f"{f}: ERROR {r['error']}")
            continue
        man = manifest.get(f, {})
        P(f"{f}: S={man.get('image_size', '?')} opset {r['opset']} nodes {r['nodes']}"
          f" inputs {r['inputs']}"
          + (f" external-data initializers {r['external_initializers']}/{r['initializers']}"
             if r["external_initializers"] else "")
          + (f" functions {r['functions']}" if r["functions"] else "")
          + (f" ort Δ {man['ort_max_abs_diff']:.2e}" if "ort_max_abs_diff" in man else ""))
        P("  unsupported: " + (", ".join(f"{op}×{r['ops'][op]}" for op in r["unsupported"])
                               or "none"))
        for k, c in r["notes"].items():
            if k.startswith("no BatchNormalization") and "bn_layers" in man:
                k += (f": the model's {man['bn_layers']} BatchNorm layers were folded into convs"
                      if man["bn_layers"] else ": the model has no BatchNorm")
            interesting = not (k.startswith("Concat axis=1") or k.startswith("Gemm transB=1 alpha=1.0 beta=1.0")
                               or k == "Flatten axis=1" or k.startswith("Clip min=0.0 max=6.0")
                               or k.startswith("Conv depthwise"))
            if interesting or a.verbose:
                P(f"    {c:4d}  {k}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.report:
        tmp = a.report + ".tmp"
        with open(tmp, "w") as fp:
            fp.write(text)
        os.replace(tmp, a.report)
    return 0


# ---------------------------------------------------------------------------------------
# Fashion-MNIST as an image folder

FMNIST_CLASSES = ["0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal",
                  "6-shirt", "7-sneaker", "8-bag", "9-boot"]
FMNIST_DIRS = ["/usr/share/datasets/fashion-mnist"]


def _idx(path):
    import gzip

    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fmnist(explicit=None):
    cands = ([explicit] if explicit else []) + FMNIST_DIRS
    for d in cands:
        if d and os.path.exists(os.path.join(d, "t10k-images-idx3-ubyte.gz")):
            return d
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                             text=True).stdout
        for l in out.splitlines():
            if l.endswith("t10k-images-idx3-ubyte.gz"):
                return os.path.dirname(l)
    except OSError:
        pass
    sys.exit("zoo: Fashion-MNIST not found (Debian: apt-get install dataset-fashion-mnist, "
             "or --source DIR with the four idx .gz files)")


def cmd_fmnist_folder(a):
    from PIL import Image

    src = find_fmnist(a.source)
    stamp = os.path.join(a.out, ".zoo-fmnist.json")
    want = {"size": a.size, "train": a.train, "test": a.test, "quality": 95, "source": src}
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                print(f"fmnist-folder: {a.out} up to date")
                return 0
    for split, prefix, n in (("train", "train", a.train), ("val", "t10k", a.test)):
        imgs = _idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"))
        labels = _idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"))
        n = len(imgs) if n <= 0 else min(n, len(imgs))
        for c in FMNIST_CLASSES:
            os.makedirs(os.path.join(a.out, split, c), exist_ok=True)
        for i in range(n):
            im = Image.fromarray(imgs[i], mode="L")
            if a.size != 28:
                im = im.resize((a.size, a.size), Image.BILINEAR)
            im = im.convert("RGB")
            im.save(os.path.join(a.out, split, FMNIST_CLASSES[labels[i]], f"{i:05d}.jpg"),
                    quality=95)
    with open(stamp, "w") as f:
        json.dump(want, f)
    print(f"fmnist-folder: {a.out} ({a.train} train, {a.test} val images, {a.size}x{a.size} RGB JPEG)")
    return 0


# ---------------------------------------------------------------------------------------
# onnxruntime vs csgd-dist eval --dump-logits

def cmd_ort_compare(a):
    import numpy as np
    import onnxruntime as ort
    from safetensors.numpy import load_file

    d = load_file(a.dump)
    images = d["images"].astype(np.float32)
    ours = d["logits"].astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dims = inp.shape
    fixed_batch = isinstance(dims[0], int)
    if len(dims) == 4 and all(isinstance(v, int) for v in dims[1:]) and list(dims[1:]) != list(images.shape[1:]):
        print(f"ort-compare: {a.onnx} takes {dims}, the dump holds {list(images.shape)}")
        return 2
    bs = (dims[0] if fixed_batch else a.batch) or 1
    outs = []
    for i in range(0, len(images), bs):
        chunk = images[i:i + bs]
        if fixed_batch and len(chunk) != bs:
            chunk = np.concatenate([chunk, np.zeros((bs - len(chunk),) + chunk.shape[1:], np.float32)])
        o = sess.run(None, {inp.name: chunk})[0]
        outs.append(o[:min(bs, len(images) - i)])
    theirs = np.concatenate(outs).reshape(ours.shape)
    diff = float(np.max(np.abs(theirs - ours)))
    scale = float(np.max(np.abs(theirs))) or 1.0
    rel = diff / scale
    agree = int(np.sum(np.argmax(theirs, 1) == np.argmax(ours, 1)))
    ok = rel <= a.rtol
    print(f"ort-compare: {len(images)} images, max|Δ| {diff:.3e}, max|ort| {scale:.3g}, "
          f"rel {rel:.3e}, argmax agrees {agree}/{len(images)}"
          f"{'' if ok else f' FAIL (rel > {a.rtol:g})'}")
    if a.json:
        print(json.dumps({"images": len(images), "max_abs": diff, "max_ort": scale, "rel": rel,
                          "argmax_agree": agree, "ok": ok}))
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------
# the zoo-check table

def _versions():
    out = []
    for mod in ("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript"):
        try:
            if mod == "torchvision":
                import tv_cpu  # noqa: F401
            m = __import__(mod)
            out.append(f"{mod} {m.__version__}")
        except Exception as e:  # noqa: BLE001
            out.append(f"{mod} unavailable ({type(e).__name__})")
    return ", ".join(out)


def _read_result(path):
    r = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            if k:
                r[k] = v
    for k in ("eval", "prune", "pruned_export"):
        if k in r:
            try:
                r[k] = json.loads(r[k])
            except ValueError:
                r[k] = {"error": r[k]}
    return r


def _cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def cmd_table(a):
    keys = select_models(a.models)
    exps = [e for e in a.exporters.split(",") if e]
    rows = []
    for k in keys:
        for e in exps:
            p = os.path.join(a.work, f"{k}.{e}", "result.tsv")
            if os.path.exists(p):
                rows.append(_read_result(p))
            else:
                rows.append({"model": k, "exporter": e, "size": image_size(k),
                             "status": "not run"})

    def cmp_cell(d):
        if not isinstance(d, dict):
            return ""
        if "error" in d:
            return "error: " + d["error"][:120]
        agree = f", argmax {d['argmax_agree']}/{d['images']}" if d["argmax_agree"] != d["images"] else ""
        return f"{d['rel']:.1e}{agree}" + ("" if d.get("ok") else " ✗")

    lines = []
    P = lines.append
    P("# Model zoo check")
    P("")
    P(f"`{a.command}` — {time.strftime('%Y-%m-%d %H:%M %Z')}; {_versions()}; "
      f"csgd-dist `{a.exe}`" + (f" ({_git_describe()})" if _git_describe() else "") + ".")
    P("")
    P("Random weights (seed 0), BatchNorm statistics randomised, 10 classes; exporters: `dynamo` ="
      " `torch.onnx.export(model, (x,), path)` (torch's default), `legacy` = `dynamo=False,"
      " do_constant_folding=False`, symbolic batch. Data: Fashion-MNIST as RGB JPEGs at the input"
      f" size S. C-SGD: {a.settings}. Columns: *eval Δ* = max |onnxruntime − csgd-dist eval| /"
      f" max |logit| on the test images (✗ above {a.rtol:g}); *prune Δ* = max |Δlogit| pruned vs"
      f" unpruned on the test images (csgd-dist's own check; ✗ above {a.prune_tol:g};"
      " rel = over the pruned model's max |logit|); *pruned export Δ* = as eval Δ,"
      " for `export --onnx` of the pruned model.")
    P("")
    P("| model | exporter | S | import | eval Δ | prune Δ | FLOPs cut | pruned export Δ | status |")
    P("|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for r in rows:
        imp = r.get("import", "")
        if r.get("export", "ok") != "ok":
            imp = "export failed: " + r.get("export", "")[:200]
        elif imp.startswith("refused: "):
            imp = imp[len("refused: "):]
            if imp.startswith("error: "):
                imp = imp[len("error: "):]
            f = f"{r.get('model')}.{r.get('exporter')}.onnx: "
            if f in imp:
                imp = imp.split(f, 1)[1]
        pr = r.get("prune")
        pd = fc = ""
        if isinstance(pr, dict):
            if "error" in pr:
                pd = "error: " + pr["error"][:150]
            else:
                pd = f"{pr['max_logit_diff']:.1e}"
                pe = r.get("pruned_export")
                if isinstance(pe, dict) and pe.get("max_ort"):
                    pd += f" (rel {pr['max_logit_diff'] / pe['max_ort']:.0e})"
                pd += " ✗" if pr["max_logit_diff"] > a.prune_tol else ""
                if r.get("lr") and float(r["lr"]) != 0.05:
                    pd += f" (lr {r['lr']})"
                fc = f"{100 * (1 - pr['flops_after'] / pr['flops_before']):.1f} %"
        st = r.get("status", "")
        if st != "ok":
            failed += 1
        P("| " + " | ".join(_cell(c) for c in (
            r.get("model"), r.get("exporter"), r.get("size"), imp, cmp_cell(r.get("eval")), pd, fc,
            cmp_cell(r.get("pruned_export")), "ok" if st == "ok" else ("**" + (st or "fail") + "**"))) + " |")
    P("")
    ok = len(rows) - failed
    P(f"{ok}/{len(rows)} files pass every step.")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.doc:
        d = os.path.dirname(a.doc)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(a.doc + ".tmp", "w") as f:
            f.write(text)
        os.replace(a.doc + ".tmp", a.doc)
        print(f"zoo: table written to {a.doc}")
    return 1 if failed else 0


def _git_describe():
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, HERE)
    if argv and argv[0] == "_export-one":
        key, exporter, out = argv[1:4]
        try:
            rec = export_one(key, exporter, out)
        except Exception as e:
            traceback.print_exc()
            rec = {"ok": False, "error": f"{type(e).__name__}: "
                   + (str(e).strip().splitlines() or [''])[0][:300]}
        print(json.dumps(rec), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="zoo.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="export the zoo to ONNX")
    e.add_argument("--out", required=True)
    e.add_argument("--models", default="", help="comma-separated keys or names, or 'quick'")
    e.add_argument("--exporters", default="dynamo,legacy")
    e.add_argument("--timeout", type=int, default=900, help="seconds per export")
    e.add_argument("--size", type=int, help="input side for every model (default: per model)")
    e.add_argument("--skip-existing", action="store_true",
                   help="keep files the manifest records as exported")
    o = sub.add_parser("ops", help="op histogram and import blockers")
    o.add_argument("dir")
    o.add_argument("--report", help="also write the printed report here")
    o.add_argument("--verbose", action="store_true", help="list routine attributes too")
    fm = sub.add_parser("fmnist-folder", help="Fashion-MNIST as an RGB JPEG image folder")
    fm.add_argument("--out", required=True)
    fm.add_argument("--size", type=int, default=64)
    fm.add_argument("--train", type=int, default=512)
    fm.add_argument("--test", type=int, default=64)
    fm.add_argument("--source", help="folder with the idx .gz files")
    oc = sub.add_parser("ort-compare", help="onnxruntime vs csgd-dist eval --dump-logits")
    oc.add_argument("--onnx", required=True)
    oc.add_argument("--dump", required=True)
    oc.add_argument("--rtol", type=float, default=1e-4)
    oc.add_argument("--batch", type=int, default=16)
    oc.add_argument("--json", action="store_true", help="also print one JSON line")
    tb = sub.add_parser("table", help="the zoo-check table from its work folders")
    tb.add_argument("--work", required=True)
    tb.add_argument("--models", default="")
    tb.add_argument("--exporters", default="dynamo,legacy")
    tb.add_argument("--command", default="bash launch/zoo-check.sh")
    tb.add_argument("--doc", help="also write the Markdown here")
    tb.add_argument("--exe", default=".build/release/csgd-dist")
    tb.add_argument("--settings", default="")
    tb.add_argument("--rtol", type=float, default=1e-4)
    tb.add_argument("--prune-tol", type=float, default=1e-3)
    ls = sub.add_parser("list", help="model keys and image sizes")
    ls.add_argument("--models", default="")
    a = p.parse_args(argv)
    if a.cmd == "export":
        return cmd_export(a)
    if a.cmd == "ops":
        return cmd_ops(a)
    if a.cmd == "fmnist-folder":
        return cmd_fmnist_folder(a)
    if a.cmd == "ort-compare":
        return cmd_ort_compare(a)
    if a.cmd == "table":
        return cmd_table(a)
    if a.cmd == "list":
        for k in select_models(a.models):
            print(k, image_size(k))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
