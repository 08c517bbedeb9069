"""ResNet-50 @224 data-parallel peer for launch/bench-vs-pytorch.sh: PyTorch DDP over gloo,
2 processes x 1 thread, the torchvision-layout ResNet-50 of ../shared/bench/pytorch-peer/
bench_resnet50.py (imported from there, so both peers train the same net), Nesterov SGD as that
script, one random 224x224 batch per rank. Prints global_img_per_s from the median step of
rank 0 (each step ends in DDP's allreduce, so every rank's step spans the same work).

usage: python bench_resnet50_ddp.py PER_RANK_BATCH STEPS [PEER_DIR]
"""
import os
import sys
import time


def worker(rank, world, batch, steps, peer_dir, port, results):
    import torch
    import torch.distributed as dist
    import torch.nn as nn

    sys.path.insert(0, peer_dir)
    from bench_resnet50 import resnet50

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial weights on every rank, as DDP expects
    model = nn.parallel.DistributedDataParallel(resnet50().train())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    torch.manual_seed(1 + rank)  # each rank its own shard
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))
    times = []
    for i in range(steps + 1):  # one warm-up step, as the csgd-dist row (--warmup 1)
        dist.barrier()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i >= 1:
            times.append(time.perf_counter() - t)
    if rank == 0:
        times.sort()
        results.put(times[len(times) // 2])
    dist.destroy_process_group()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    batch, steps = int(sys.argv[1]), int(sys.argv[2])
    here = os.path.dirname(os.path.abspath(__file__))
    peer_dir = sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, "..", "..", "..", "shared", "bench", "pytorch-peer")
    if batch < 1 or steps < 1 or not os.path.isfile(os.path.join(peer_dir, "bench_resnet50.py")):
        sys.exit(f"error: need PER_RANK_BATCH >= 1, STEPS >= 1 and {peer_dir}/bench_resnet50.py")
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    port = 29600 + os.getpid() % 300
    mp.spawn(worker, args=(2, batch, steps, peer_dir, port, results), nprocs=2, join=True)
    median = results.get()
    print(f"resnet50 DDP gloo world=2 threads/rank=1 per_rank_batch={batch} "
          f"step_median_s={median:.3f} global_img_per_s={2 * batch / median:.2f}", flush=True)


if __name__ == "__main__":
    main()
