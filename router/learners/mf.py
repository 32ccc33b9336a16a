"""Matrix-factorisation quality predictor, after RouteLLM's MF router.

RouteLLM scores a (model, query) pair as w2 . (v_m * (W1 q + b)): a learned model
embedding v_m times a projection of the query embedding. RouteLLM trains it on
pairwise preferences between two models; here each model's score is a soft label,
so sigmoid(w2 . (v_m * (W1 q + b)) + c_m) is fitted with masked cross-entropy.
A new model with only probe-set scores gets its own v_m without disturbing others.
"""

from __future__ import annotations

import numpy as np

from router.learners.torch_fit import fit_torch, sigmoid


class MfLearner:
    name = "mf"

    def __init__(self, dim: int = 128, epochs: int = 60, lr: float = 2e-3, weight_decay: float = 1e-4,
                 seed: int = 0) -> None:
        self.dim, self.epochs, self.lr, self.weight_decay, self.seed = dim, epochs, lr, weight_decay, seed
        self.w1 = self.b = self.u = self.c = None

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray, texts=None) -> MfLearner:
        import torch

        torch.manual_seed(self.seed)
        n_models = scores.shape[1]

        class Mf(torch.nn.Module):
            def __init__(self, d_in: int, dim: int) -> None:
                super().__init__()
                self.proj = torch.nn.Linear(d_in, dim)
                self.models = torch.nn.Parameter(torch.randn(n_models, dim) * 0.1)
                self.w2 = torch.nn.Parameter(torch.ones(dim))
                self.bias = torch.nn.Parameter(torch.zeros(n_models))

            def forward(self, q):
                return (self.proj(q) @ (self.models * self.w2).T) + self.bias

        net = Mf(x.shape[1], self.dim)
        fit_torch(net, x, scores, mask, epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                  seed=self.seed)
        with torch.no_grad():
            self.w1 = net.proj.weight.T.numpy().copy()
            self.b = net.proj.bias.numpy().copy()
            # w2 . (v_m * h) = h @ (V * w2).T: fold w2 into the model embeddings once.
            self.u = (net.models * net.w2).T.numpy().copy()
            self.c = net.bias.numpy().copy()
        return self

    def predict(self, x: np.ndarray, texts=None) -> np.ndarray:
        h = np.atleast_2d(x).astype(np.float32) @ self.w1 + self.b
        return sigmoid(h @ self.u + self.c).astype(np.float32)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        params = {"dim": self.dim, "epochs": self.epochs, "lr": self.lr, "weight_decay": self.weight_decay,
                  "seed": self.seed}
        return params, {"w1": self.w1, "b": self.b, "u": self.u, "c": self.c}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], siblings=None) -> MfLearner:
        self = cls(**params)
        self.w1, self.b, self.u, self.c = (arrays[k].astype(np.float32) for k in ("w1", "b", "u", "c"))
        return self
