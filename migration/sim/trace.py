"""Request traces: Azure LLM inference trace CSVs, time-scaled to a target load.

Any CSV with the columns TIMESTAMP, ContextTokens, GeneratedTokens works. TIMESTAMP is
either a date-time ("2023-11-16 18:15:46.6805900") or seconds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
DEFAULT_TRACE = Path(__file__).resolve().parent.parent / "data" / "AzureLLMInferenceTrace_conv.csv"


class TraceError(ValueError):
    """The file is not a usable trace (the message is one line)."""


@dataclass(frozen=True)
class Trace:
    arrival_s: np.ndarray  # float64, sorted, starting at 0
    prompt: np.ndarray  # int64
    output: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @property
    def rate(self) -> float:
        """Mean arrival rate (requests per second)."""
        return (len(self) - 1) / self.span_s if self.span_s > 0 else float(len(self))


def _seconds(stamp: str) -> float:
    try:
        return float(stamp)
    except ValueError:
        pass
    head, _, frac = stamp.strip().partition(".")
    t = datetime.strptime(head, "%Y-%m-%d %H:%M:%S").timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def load_trace(path: str | Path) -> Trace:
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace {path}: no such file")
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise TraceError(f"trace {path}: missing column(s) {', '.join(missing)} "
                                 f"(need {', '.join(COLUMNS)})")
            rows = [(_seconds(r["TIMESTAMP"]), int(r["ContextTokens"]), int(r["GeneratedTokens"]))
                    for r in reader]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as e:
        if isinstance(e, TraceError):
            raise
        raise TraceError(f"trace {path}: bad row ({str(e).splitlines()[0]})") from None
    if not rows:
        raise TraceError(f"trace {path}: no requests")
    data = np.array(sorted(rows), dtype=float)
    if (data[:, 1] < 1).any() or (data[:, 2] < 1).any():
        raise TraceError(f"trace {path}: token counts must be >= 1")
    return Trace(data[:, 0] - data[0, 0], data[:, 1].astype(np.int64), data[:, 2].astype(np.int64))


def scale(trace: Trace, rate: float, duration_s: float | None, max_model_len: int) -> Trace:
    """Replay at `rate` requests/s for `duration_s` (default: the trace once).

    Arrival times are compressed (or stretched) by one factor, keeping the trace's
    burstiness; the trace repeats back to back to fill a longer duration. Requests are
    clipped to the model's context: the output keeps at most half of it, the prompt the rest.
    """
    factor = trace.rate / rate
    times = trace.arrival_s * factor
    period = (trace.span_s + 1.0 / trace.rate) * factor
    duration = period if duration_s is None else duration_s
    copies = max(int(np.ceil(duration / period)), 1)
    arrival = np.concatenate([times + i * period for i in range(copies)])
    keep = arrival < duration if duration_s is not None else slice(None)
    output = np.minimum(np.tile(trace.output, copies)[keep], max_model_len // 2)
    prompt = np.minimum(np.tile(trace.prompt, copies)[keep], max_model_len - output)
    return Trace(arrival[keep], prompt, output)
