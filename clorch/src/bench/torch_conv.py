#!/usr/bin/env python3
"""Single-thread PyTorch CPU SGD training-throughput anchors for a few conv nets.

Run:  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python torch_conv.py [--min-time 3] [--repeats 3]
`clorch bench --torch PYTHON` runs this file (embedded in the binary) for the P7 rows, with
--only lop_convnet and --only reduced_resnet18, and reads the --json file it writes.
Step = forward + cross-entropy + backward + SGD(lr=0.01) step, random inputs/labels
(pre-generated once), model in train mode. Warm-up 20 steps, then each repeat runs
steps until >= min_time s (time.perf_counter); report best of `repeats`.
FLOPs: analytic, conv/linear only, 1 multiply-add = 2 FLOPs; training ~= 3x forward.
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import argparse, json, platform, subprocess, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass


# ---------------------------------------------------------------- nets
class LopConvNet(nn.Module):
    """LoP Continual-ImageNet ConvNet (lop/nets/conv_net.py shapes), 3x32x32 input."""
    def __init__(self, n_out=2):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 5)     # 32 -> 28, pool -> 14
        self.c2 = nn.Conv2d(32, 64, 3)    # 14 -> 12, pool -> 6
        self.c3 = nn.Conv2d(64, 128, 3)   # 6 -> 4,  pool -> 2
        self.f1 = nn.Linear(128 * 2 * 2, 128)
        self.f2 = nn.Linear(128, 128)
        self.f3 = nn.Linear(128, n_out)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = x.flatten(1)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


class Block(nn.Module):
    """ResNet BasicBlock: 3x3 conv-BN-ReLU-3x3 conv-BN (+ 1x1 conv-BN shortcut), ReLU."""
    def __init__(self, cin, cout, stride, bias):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.b2 = nn.BatchNorm2d(cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias), nn.BatchNorm2d(cout))

    def forward(self, x):
        o = F.relu(self.b1(self.c1(x)))
        o = self.b2(self.c2(o))
        return F.relu(o + (x if self.sc is None else self.sc(x)))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stride-1 stem, no maxpool, [2,2,2,2] BasicBlocks.
    lop=True : LoP torchvision_modified_resnet (widths 64..512, conv bias=True, BN, adaptive avg-pool).
    lop=False: GEM/Mammoth reduced ResNet-18 (nf widths, conv bias=False, BN, avg_pool2d(4))."""
    def __init__(self, nf=64, n_out=100, bias=True):
        super().__init__()
        self.stem = nn.Conv2d(3, nf, 3, 1, 1, bias=bias)
        self.bn = nn.BatchNorm2d(nf)
        blocks, cin = [], nf
        for i, s in enumerate([1, 2, 2, 2]):
            cout = nf * 2 ** i
            blocks += [Block(cin, cout, s, bias), Block(cout, cout, 1, bias)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, n_out)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))   # 32x32 -> 4x4 at the last stage
        x = F.avg_pool2d(x, 4).flatten(1)                 # == AdaptiveAvgPool(1) for 4x4
        return self.fc(x)


class MnistCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3)     # 28 -> 26
        self.c2 = nn.Conv2d(32, 64, 3)    # 26 -> 24, pool -> 12
        self.f1 = nn.Linear(9216, 128)
        self.f2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c2(F.relu(self.c1(x)))), 2).flatten(1)
        return self.f2(F.relu(self.f1(x)))


NETS = [
    # name, ctor, input shape, n_out, batches
    ("lop_convnet", lambda: LopConvNet(2), (3, 32, 32), 2, [1, 32, 100]),
    ("lop_resnet18", lambda: ResNet18(64, 100, bias=True), (3, 32, 32), 100, [1, 32, 90]),
    ("reduced_resnet18_nf20", lambda: ResNet18(20, 100, bias=False), (3, 32, 32), 100, [1, 10, 32, 128]),
    ("mnist_cnn", MnistCNN, (1, 28, 28), 10, [1, 32, 128]),
]


# ---------------------------------------------------------------- analytic FLOPs
def fwd_flops_per_sample(model, in_shape):
    """2 * MACs of every Conv2d / Linear, from layer hyper-params and output shapes."""
    tot = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs = (m.in_channels // m.groups) * kh * kw * m.out_channels * out.shape[2] * out.shape[3]
        else:
            macs = m.in_features * m.out_features
        tot[0] += 2 * macs

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *in_shape))
    model.train(was)
    for h in hs:
        h.remove()
    return tot[0]


# ---------------------------------------------------------------- timing
def bench(model, in_shape, n_out, batch, warmup, min_time, repeats):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, *in_shape)
    y = torch.randint(0, n_out, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    best, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        n, c0, t0 = 0, time.process_time(), time.perf_counter()
        while True:
            step()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        cpu = (time.process_time() - c0) / dt   # fraction of a core this process got
        if n / dt > best:
            best, best_cpu = n / dt, cpu
    return best, best_cpu


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="torch_conv_results.json")
    a = ap.parse_args()
    torch.manual_seed(0)

    flags = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model_name = [l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")]
        fl = [l.split(":", 1)[1].split() for l in lscpu.splitlines() if l.startswith("Flags")]
        fl = set(fl[0]) if fl else set()
        flags = " ".join(f"{k}={'y' if k in fl else 'n'}" for k in ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile"])
    except Exception:
        model_name = ["?"]
    print(f"# torch {torch.__version__}  python {platform.python_version()}  threads={torch.get_num_threads()} "
          f"interop={torch.get_num_interop_threads()} OMP={os.environ.get('OMP_NUM_THREADS')} MKL={os.environ.get('MKL_NUM_THREADS')}")
    print(f"# CPU: {model_name[0] if model_name else '?'}  {flags}  mkldnn={torch.backends.mkldnn.is_available()}")
    print(f"# loadavg at start: {' '.join(loadavg())}")
    rows = []
    for name, ctor, shp, n_out, batches in NETS:
        if a.only and a.only not in name:
            continue
        torch.manual_seed(0)
        m = ctor()
        params = sum(p.numel() for p in m.parameters())
        fl = fwd_flops_per_sample(m, shp)
        for b in batches:
            la0 = loadavg()
            sps, cpu = bench(m, shp, n_out, b, a.warmup, a.min_time, a.repeats)
            sps *= b
            la1 = loadavg()
            gf = 3 * fl * sps / 1e9
            r = dict(net=name, batch=b, samples_per_s=sps, gflops=gf, params=params,
                     fwd_mflops=fl / 1e6, cpu_frac=cpu, load_before=la0[0], load_after=la1[0])
            rows.append(r)
            print(f"#   {name:24s} b={b:4d}  {sps:10.1f} samples/s  {gf:6.2f} GFLOP/s  cpu/wall {cpu:.2f}  load1 {la0[0]}->{la1[0]}", flush=True)
    print(f"# loadavg at end: {' '.join(loadavg())}\n")
    print("| net | batch | samples/s | GFLOP/s (3x fwd) | params | fwd MFLOP/sample | cpu/wall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['net']} | {r['batch']} | {r['samples_per_s']:.1f} | {r['gflops']:.2f} | {r['params']:,} | {r['fwd_mflops']:.2f} | {r['cpu_frac']:.2f} |")
    with open(a.json, "w") as f:
        json.dump(dict(torch=torch.__version__, cpu=model_name, flags=flags, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
