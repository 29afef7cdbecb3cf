import sys, ekdaa_cuda
rho = float(sys.argv[1])
r = ekdaa_cuda.train("fmnist", "ekdaa", backend="numpy", epochs=2, train_limit=10000, seed=0,
    optimizer="adam", lr=1e-3, activation="tanh", schedule="cosine", dropout_conv=0.1, dropout_fc=0.3,
    normalize="rms", beta=0.3, rho=rho, progress=False, plot=False)
print("rho", rho, r.history[-1] if hasattr(r, "history") else r)
