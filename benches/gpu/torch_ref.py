"""PyTorch reference for the GPU benchmark: the same autoencoder, data and update as Moira.

Reads a DSSTNE NetCDF dataset (sparseStart0/sparseEnd0/sparseIndex0, width0) with h5py, keeps
it on the GPU as CSR, and trains `layers` x `hidden` sigmoid hidden layers (dropout) and a
sigmoid output over the catalogue (dropout with DSSTNE's sigmoid rule, as Moira does) with ScaledMarginalCrossEntropy {1, 0, 1, 1} (for a sigmoid
output that is binary cross-entropy on the logits: the same gradient a − t), SGD with L2 on
weights, batches in file order (the benchmark network has ShuffleIndices false). Sparse input
through torch.sparse (CSR batch × dense weight); dense targets built on the GPU per batch.

Prints one JSON line per epoch: {"impl", "epoch", "seconds", "loss"} (loss: mean per example).
"""
import argparse
import warnings
import json
import time

import h5py
import numpy as np
import torch


def load(path):
    with h5py.File(path, "r") as f:
        start = f["sparseStart0"][:].astype(np.int64)
        end = f["sparseEnd0"][:].astype(np.int64)
        index = f["sparseIndex0"][:].astype(np.int64)
        width = int(np.asarray(f.attrs["width0"]).reshape(-1)[0])
    return start, end, index, width


warnings.filterwarnings("ignore", category=UserWarning)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--alpha", type=float, default=0.025)
    p.add_argument("--lam", type=float, default=0.0001)
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the dense part")
    p.add_argument("--name", default="pytorch")
    a = p.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device("cuda")
    start, end, index, width = load(a.data)
    assert np.all(start[1:] == end[:-1]), "rows must be contiguous"
    users = len(start)
    crow = torch.from_numpy(np.append(start, end[-1])).to(dev)
    col = torch.from_numpy(index).to(dev)
    ones = torch.ones(len(index), device=dev)

    torch.manual_seed(1)
    sizes = [width] + [a.hidden] * a.layers + [width]
    weights, biases = [], []
    for i in range(len(sizes) - 1):
        w = (torch.randn(sizes[i], sizes[i + 1], device=dev) * 0.01).requires_grad_()
        b = torch.full((sizes[i + 1],), -10.2 if i == len(sizes) - 2 else 0.0, device=dev)
        weights.append(w)
        biases.append(b.requires_grad_())
    opt = torch.optim.SGD(
        [{"params": weights, "weight_decay": a.lam}, {"params": biases, "weight_decay": 0.0}],
        lr=a.alpha,
    )

    def dropout(h):
        # DSSTNE's rule for sigmoid layers (as Moira): a dropped unit is set to 0.5, a kept one
        # scaled by 1/(1 - p).
        drop = torch.rand_like(h) < a.dropout
        return torch.where(drop, 0.5, h * (1.0 / (1.0 - a.dropout)))

    def dense_part(h, targets):
        for w, b in zip(weights[1:-1], biases[1:-1]):
            h = dropout(torch.sigmoid(h @ w + b))
        z = h @ weights[-1] + biases[-1]
        return torch.nn.functional.binary_cross_entropy_with_logits(z, targets, reduction="sum")

    dense = torch.compile(dense_part) if a.compile else dense_part

    for epoch in range(a.epochs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        total = torch.zeros((), device=dev)
        for s in range(0, users, a.batch):
            e = min(s + a.batch, users)
            lo, hi = crow[s], crow[e]
            c = crow[s : e + 1] - lo
            x = torch.sparse_csr_tensor(c, col[lo:hi], ones[lo:hi], size=(e - s, width))
            t = torch.zeros(e - s, width, device=dev)
            rows = torch.repeat_interleave(torch.arange(e - s, device=dev), c[1:] - c[:-1])
            t[rows, col[lo:hi]] = 1.0
            h0 = dropout(torch.sigmoid(torch.sparse.mm(x, weights[0]) + biases[0]))
            loss = dense(h0, t)
            opt.zero_grad(set_to_none=True)
            (loss / (e - s)).backward()
            opt.step()
            total += loss.detach()
        torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        print(json.dumps({"impl": a.name, "epoch": epoch, "seconds": sec,
                          "loss": float(total) / users}), flush=True)


if __name__ == "__main__":
    main()
