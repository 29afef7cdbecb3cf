import numpy as np, collections, sys
import ekdaa_cuda, ekdaa_cuda.reference as ref, ekdaa_cuda.optim as optim
norms = collections.defaultdict(list)
orig = ref.pascanu_rescale
def rec(g, rho):
    norms[g.shape].append(float(np.sqrt(np.sum(np.square(g, dtype=np.float64)))))
    return orig(g, rho)
optim.ref.pascanu_rescale = rec
ref.pascanu_rescale = rec
ekdaa_cuda.train("fmnist", "ekdaa", backend="numpy", epochs=1, train_limit=int(sys.argv[1]), test_limit=500,
    optimizer="adam", lr=1e-3, activation="tanh", schedule="cosine", dropout_conv=0.1, dropout_fc=0.3,
    normalize="rms", beta=0.3, progress=False, plot=False)
for k, v in norms.items():
    v = np.array(v); n = len(v)
    print(k, n, "first50 med %.3g" % np.median(v[:50]), "last50 med %.3g p90 %.3g max %.3g" % (np.median(v[-50:]), np.percentile(v[-50:], 90), v.max()))
