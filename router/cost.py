"""Cost model: price per million tokens x predicted prompt and output tokens.

Costs are in USD per 1,000 requests, a unit in which a typical query on a
mid-priced model costs a few tenths, so lambda (quality points per unit of cost)
is a number of order 0.1-1 rather than 1e4.
"""

from __future__ import annotations

import numpy as np

PER_1K_REQUESTS = 1000.0 / 1e6  # from USD per million tokens to USD per 1k requests, per token


def price_arrays(models: list[str], prices: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    missing = [m for m in models if m not in prices]
    if missing:
        raise KeyError(f"no price for model {missing[0]!r}")
    pin = np.array([prices[m][0] for m in models], dtype=np.float64)
    pout = np.array([prices[m][1] for m in models], dtype=np.float64)
    return pin, pout


def cost_per_1k(prompt_tokens, output_tokens: np.ndarray, pin: np.ndarray, pout: np.ndarray) -> np.ndarray:
    """prompt_tokens: scalar or (n,); output_tokens: (m,) or (n, m). Returns the same shape."""
    p = np.asarray(prompt_tokens, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    return (p * pin + np.asarray(output_tokens, dtype=np.float64) * pout) * PER_1K_REQUESTS
