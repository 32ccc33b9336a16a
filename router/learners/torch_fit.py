"""Masked binary cross-entropy training for the torch learners (training only).

Scores are soft labels in [0, 1]; missing scores are masked out of the loss. A
slice of the training rows is held back to pick the epoch with the lowest
held-out loss, then that state is kept.
"""

from __future__ import annotations

import numpy as np


def fit_torch(module, x: np.ndarray, scores: np.ndarray, mask: np.ndarray, *, epochs: int = 60,
              lr: float = 2e-3, weight_decay: float = 1e-4, batch: int = 256, seed: int = 0,
              holdout: float = 0.1) -> int:
    """Train `module` (x -> logits per model) in place; returns the epoch kept."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = max(1, int(len(x) * holdout)) if len(x) >= 20 else 0
    val, tr = order[:n_val], order[n_val:]
    tx, ts, tm = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (x, scores, mask))
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")

    def loss_on(idx) -> torch.Tensor:
        out = bce(module(tx[idx]), ts[idx]) * tm[idx]
        return out.sum() / tm[idx].sum().clamp(min=1.0)

    best, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(1, epochs + 1):
        module.train()
        for i in range(0, len(tr), batch):
            idx = torch.from_numpy(tr[i:i + batch])
            opt.zero_grad()
            loss_on(idx).backward()
            opt.step()
        rng.shuffle(tr)
        if not n_val:
            continue
        module.eval()
        with torch.no_grad():
            v = float(loss_on(torch.from_numpy(val)))
        if v < best:
            best, best_epoch = v, epoch
            best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return best_epoch or epochs


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
