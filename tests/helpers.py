"""Small shared test data (importable from the tests: pyproject sets pytest's pythonpath)."""

import numpy as np


def template_data(n_train=120, n_test=40, seed=0, noise=0.2):
    """A learnable Fashion-MNIST-shaped task: ten fixed random templates plus Gaussian noise.
    Returns (x_train, y_train, x_test, y_test) with x float32 [N, 1, 28, 28]."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(-0.5, 0.5, (10, 1, 28, 28))
    ytr, yte = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)

    def images(labels):
        return (templates[labels] + noise * rng.standard_normal((len(labels), 1, 28, 28))).astype(np.float32)

    return images(ytr), ytr, images(yte), yte
