"""A small MLP (or, with hidden=0, a per-model logistic model) on the query embedding."""

from __future__ import annotations

import numpy as np

from router.learners.torch_fit import fit_torch, sigmoid


class MlpLearner:
    name = "mlp"

    def __init__(self, hidden: int = 256, dropout: float = 0.2, epochs: int = 60, lr: float = 2e-3,
                 weight_decay: float = 1e-3, seed: int = 0) -> None:
        self.hidden, self.dropout, self.epochs = hidden, dropout, epochs
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray, texts=None) -> MlpLearner:
        import torch

        torch.manual_seed(self.seed)
        d, m = x.shape[1], scores.shape[1]
        if self.hidden:
            net = torch.nn.Sequential(torch.nn.Linear(d, self.hidden), torch.nn.ReLU(),
                                      torch.nn.Dropout(self.dropout), torch.nn.Linear(self.hidden, m))
        else:
            net = torch.nn.Sequential(torch.nn.Linear(d, m))
        fit_torch(net, x, scores, mask, epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                  seed=self.seed)
        linears = [mod for mod in net if isinstance(mod, torch.nn.Linear)]
        with torch.no_grad():
            self.layers = [(lin.weight.T.numpy().copy(), lin.bias.numpy().copy()) for lin in linears]
        return self

    def predict(self, x: np.ndarray, texts=None) -> np.ndarray:
        h = np.atleast_2d(x).astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return sigmoid(h).astype(np.float32)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        params = {"hidden": self.hidden, "dropout": self.dropout, "epochs": self.epochs, "lr": self.lr,
                  "weight_decay": self.weight_decay, "seed": self.seed}
        arrays = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        return params, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], siblings=None) -> MlpLearner:
        self = cls(**params)
        n = len([k for k in arrays if k.startswith("w")])
        self.layers = [(arrays[f"w{i}"].astype(np.float32), arrays[f"b{i}"].astype(np.float32)) for i in range(n)]
        return self
