"""Frobenius norms of every update tensor over one epoch (usage: python norms.py N_IMAGES)."""
import collections
import sys

import numpy as np

import ekdaa_cuda
import ekdaa_cuda.optim as optim
import ekdaa_cuda.reference as ref

norms = collections.defaultdict(list)
pascanu_rescale = ref.pascanu_rescale


def recording_rescale(g, rho):
    norms[g.shape].append(float(np.sqrt(np.sum(np.square(g, dtype=np.float64)))))
    return pascanu_rescale(g, rho)


optim.ref.pascanu_rescale = recording_rescale
ekdaa_cuda.train("fmnist", "ekdaa", backend="numpy", epochs=1, train_limit=int(sys.argv[1]), test_limit=500,
                 optimizer="adam", lr=1e-3, activation="tanh", schedule="cosine", dropout_conv=0.1, dropout_fc=0.3,
                 normalize="rms", beta=0.3, progress=False, plot=False)
for shape, values in norms.items():
    v = np.array(values)
    print(shape, len(v), f"first50 med {np.median(v[:50]):.3g}", f"last50 med {np.median(v[-50:]):.3g}",
          f"p90 {np.percentile(v[-50:], 90):.3g} max {v.max():.3g}")
