#!/usr/bin/env python3
"""JAX-CPU peer: I -> 200 -> I autoencoder, jit-compiled train step, dense input.

Each batch is densified on the host (numpy) and fed to one jitted step (forward, full-output
sigmoid cross-entropy, backward, Adam or SGD written out by hand). XLA's CPU backend runs on
--threads cores (XLA_FLAGS below; run.sh also pins the process with taskset). One warm-up
epoch (compilation, for the full and the last partial batch shape) is excluded.
Prints one JSON line: {"peer":"jax","dataset":...,"users_per_s":...,"epochs":...,"loss":...}
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

args = common.parse_args("jax")
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=%d" % args.threads)
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import functools  # noqa: E402

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

indptr, indices, users, items = common.load(args)
params = tuple(jnp.asarray(p) for p in common.init_params(args, items))
adam = args.optimizer == "adam"
lr, beta1, beta2, eps = args.lr, 0.9, 0.999, 1e-8
opt = (tuple(jnp.zeros_like(p) for p in params), tuple(jnp.zeros_like(p) for p in params),
       jnp.zeros((), jnp.float32))


def loss_fn(params, x):
    w1, b1, w2, b2 = params
    h = jax.nn.sigmoid(x @ w1 + b1)
    logits = h @ w2 + b2
    # Binary cross-entropy of sigmoid(logits) against x, in the stable form.
    bce = jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.sum(bce) / x.shape[0]


@functools.partial(jax.jit, donate_argnums=(0, 1))
def train_step(params, opt, x):
    loss, grads = jax.value_and_grad(loss_fn)(params, x)
    m, v, t = opt
    if adam:
        t = t + 1.0
        c1, c2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
        m = tuple(beta1 * mi + (1.0 - beta1) * g for mi, g in zip(m, grads))
        v = tuple(beta2 * vi + (1.0 - beta2) * g * g for vi, g in zip(v, grads))
        params = tuple(p - lr * (mi / c1) / (jnp.sqrt(vi / c2) + eps)
                       for p, mi, vi in zip(params, m, v))
    else:
        params = tuple(p - lr * g for p, g in zip(params, grads))
    return params, (m, v, t), loss * x.shape[0]


def epoch(order):
    global params, opt
    losses = []
    for rows, cols, n in common.batches(indptr, indices, order, args.batch):
        x = np.zeros((n, items), np.float32)
        x[rows, cols] = 1.0
        params, opt, loss = train_step(params, opt, x)
        losses.append(loss)
    return float(jnp.sum(jnp.stack(losses))) / len(order)


times, loss = common.run_epochs(args, users, epoch)
common.report("jax", args, users, items, times, loss,
              {"version": jax.__version__, "devices": str(jax.devices())})
