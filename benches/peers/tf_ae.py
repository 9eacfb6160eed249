#!/usr/bin/env python3
"""TensorFlow-CPU peer: I -> 200 -> I autoencoder with a sparse input layer.

The input batch is a tf.SparseTensor multiplied with tf.sparse.sparse_dense_matmul (as in
DSSTNE's own TensorFlow comparison, the input is never densified for the first layer); the
target is the same batch made dense (tf.sparse.to_dense) for the full-output sigmoid
cross-entropy. Adam (or SGD) is written out by hand so that both peers run the same update.
Threads: intra-op = --threads (2), inter-op = 1. One warm-up epoch (tracing) is excluded.
Prints one JSON line: {"peer":"tensorflow","dataset":...,"users_per_s":...,"epochs":...,"loss":...}
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import common  # noqa: E402

args = common.parse_args("tensorflow")
os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.threads)
os.environ["TF_NUM_INTEROP_THREADS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

indptr, indices, users, items = common.load(args)
params = [tf.Variable(p) for p in common.init_params(args, items)]
W1, b1, W2, b2 = params
moments = [(tf.Variable(tf.zeros_like(p)), tf.Variable(tf.zeros_like(p))) for p in params]
step_no = tf.Variable(0.0)
lr, beta1, beta2, eps = args.lr, 0.9, 0.999, 1e-8
adam = args.optimizer == "adam"


@tf.function(input_signature=[
    tf.TensorSpec([None, 2], tf.int64),
    tf.TensorSpec([None], tf.float32),
    tf.TensorSpec([2], tf.int64),
])
def train_step(idx, vals, shape):
    x = tf.SparseTensor(idx, vals, shape)
    n = tf.cast(shape[0], tf.float32)
    with tf.GradientTape() as tape:
        h = tf.sigmoid(tf.sparse.sparse_dense_matmul(x, W1) + b1)
        logits = tf.matmul(h, W2) + b2
        y = tf.sparse.to_dense(x)
        loss = tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)) / n
    grads = tape.gradient(loss, params)
    if adam:
        step_no.assign_add(1.0)
        c1 = 1.0 - tf.pow(beta1, step_no)
        c2 = 1.0 - tf.pow(beta2, step_no)
        for p, g, (m, v) in zip(params, grads, moments):
            m.assign(beta1 * m + (1.0 - beta1) * g)
            v.assign(beta2 * v + (1.0 - beta2) * tf.square(g))
            p.assign_sub(lr * (m / c1) / (tf.sqrt(v / c2) + eps))
    else:
        for p, g in zip(params, grads):
            p.assign_sub(lr * g)
    return loss * n


def epoch(order):
    total = 0.0
    for rows, cols, n in common.batches(indptr, indices, order, args.batch):
        idx = np.stack([rows, cols], axis=1)
        vals = np.ones(len(rows), np.float32)
        total += float(train_step(idx, vals, np.array([n, items], np.int64)))
    return total / len(order)


times, loss = common.run_epochs(args, users, epoch)
common.report("tensorflow", args, users, items, times, loss, {"version": tf.__version__})
