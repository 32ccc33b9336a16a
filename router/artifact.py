"""The trained router artifact: one .npz file, no pickle.

Arrays are stored under "<learner>/<name>"; everything else (model names, learner
params, the chosen learner, calibrated lambdas, the length model) is one JSON
string under "__meta__". Loading checks the format and fails with ArtifactError.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from router.data import shipped_path
from router.learners import Learner, learner_from_state
from router.lengths import LengthModel

# /2: the text learner's n-gram hashes and clipping and the kNN's projected vectors changed;
# a /1 artifact would load and predict with features it was not trained on.
FORMAT = "turnout-router/2"
SHIPPED_NAME = "router_artifact.npz"


class ArtifactError(RuntimeError):
    """A missing or corrupt router artifact."""


@dataclass
class Predictors:
    models: list[str]
    learners: dict[str, Learner]
    chosen: str
    lengths: LengthModel
    # per learner: held-out metrics and lambdas calibrated on the held-out split
    info: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def learner(self) -> Learner:
        return self.learners[self.chosen]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        params = {}
        for name, learner in self.learners.items():
            p, arrs = learner.state()
            params[name] = p
            arrays.update({f"{name}/{k}": v for k, v in arrs.items()})
        meta = {"format": FORMAT, "models": self.models, "chosen": self.chosen, "params": params,
                "lengths": self.lengths.to_json(), "info": self.info, "meta": self.meta}
        arrays["__meta__"] = np.array(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)
        return path


def shipped_artifact_path() -> Path:
    return shipped_path(SHIPPED_NAME)


def load_predictors(path: str | Path | None = None) -> Predictors:
    path = Path(path) if path else shipped_artifact_path()
    if not path.is_file():
        raise ArtifactError(f"router artifact {path} does not exist (run `turnout router train`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ArtifactError(f"router artifact {path} is corrupt: {type(e).__name__}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"router artifact {path} is not a {FORMAT} file (retrain it with `turnout router train`)")
    try:
        learners = {}
        # learners built from others (a shared blend) load after those
        for name, params in sorted(meta["params"].items(), key=lambda kv: bool(kv[1].get("shared"))):
            own = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(name + "/")}
            learners[name] = learner_from_state(name, params, own, learners)
        if meta["chosen"] not in learners:
            raise KeyError(meta["chosen"])
        return Predictors(list(meta["models"]), learners, meta["chosen"], LengthModel.from_json(meta["lengths"]),
                          meta.get("info", {}), meta.get("meta", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"router artifact {path} is corrupt: missing or bad {e}") from None
