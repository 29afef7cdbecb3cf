"""Screen of Pascanu rho: 10,000 training images x 2 epochs, seed 0 (usage: python screen.py RHO)."""
import sys

import ekdaa_cuda

rho = float(sys.argv[1])
result = ekdaa_cuda.train("fmnist", "ekdaa", backend="numpy", epochs=2, train_limit=10000, seed=0,
                          optimizer="adam", lr=1e-3, activation="tanh", schedule="cosine", dropout_conv=0.1,
                          dropout_fc=0.3, normalize="rms", beta=0.3, rho=rho, progress=False, plot=False)
print("rho", rho, result.history[-1])
