"""torch.topk on the same problem as examples/gpu_topk.rs: top-100 of 100,000 users x 27,278
items in batches of 4,096 rows already on the GPU; median of 5 timed passes after a warm-up,
indices and values copied to the host as Moira does. Prints one JSON line."""
import json
import statistics
import sys
import time

import torch

users, items, k = (int(a) for a in (sys.argv[1:4] + ["100000", "27278", "100"][len(sys.argv[1:4]):]))
batch = min(4096, users)
scores = torch.rand(batch, items, device="cuda")


def one_pass():
    torch.cuda.synchronize()
    t = time.perf_counter()
    done = 0
    while done < users:
        rows = min(batch, users - done)
        v, i = torch.topk(scores[:rows], k, dim=1, largest=True, sorted=True)
        v.cpu(), i.cpu()
        done += rows
    torch.cuda.synchronize()
    return time.perf_counter() - t


one_pass()
median = statistics.median(one_pass() for _ in range(5))
print(json.dumps({"impl": "torch-topk", "users": users, "items": items, "k": k,
                  "seconds": median, "users_per_s": users / median}))
