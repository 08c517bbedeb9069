# onnxruntime against itself on a zoo work folder's pruned.onnx: graph optimisation on vs off
# (and 1 vs 2 threads), beside csgd-dist's own logits. Measures the float32 noise floor of
# a net, the level below which no implementation can hold |Δlogit|.
#   .build/pyenv/bin/python3 launch/zoo/ort_floor.py runs/zoo/work/<model>.<exporter> ...
import sys, numpy as np, onnxruntime as ort
from safetensors.numpy import load_file
for w in sys.argv[1:]:
    x = load_file(f"{w}/pruned.logits.safetensors")["images"]
    outs = {}
    for name, lvl, th in (("all,1t", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 1), ("none,1t", ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 1), ("all,2t", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 2)):
        so = ort.SessionOptions(); so.graph_optimization_level = lvl; so.intra_op_num_threads = th
        s = ort.InferenceSession(f"{w}/pruned.onnx", so, providers=["CPUExecutionProvider"])
        outs[name] = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i+8]})[0] for i in range(0, len(x), 8)])
    ours = load_file(f"{w}/pruned.logits.safetensors")["logits"]
    ref = outs["all,1t"]
    print(w.split("/")[-1], "max|l| %.3g" % abs(ref).max(), " ".join("%s %.2e" % (k, abs(v - ref).max()) for k, v in outs.items()), "ours %.2e" % abs(ours - ref).max())
