"""The one Turnout config file: each package owns its section, this module composes them.

`load_config(path)` validates a YAML file and raises ConfigError with a one-line
message naming the offending field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cache.config import CacheSpec
from gateway.config import GatewaySpec
from migration.config import MigrationSpec
from replicas.config import ModelSpec
from router.config import RouterSpec


class ConfigError(ValueError):
    """An invalid config file; str() is one line naming the field."""


class TurnoutConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ModelSpec] = Field(min_length=1)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    router: RouterSpec = Field(default_factory=RouterSpec)
    migration: MigrationSpec = Field(default_factory=MigrationSpec)

    @model_validator(mode="after")
    def _cross_checks(self) -> TurnoutConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: duplicate model name {dupes[0]!r}")
        if "auto" in names:
            raise ValueError("models: 'auto' is reserved for routing")
        if self.gateway.default_model and self.gateway.default_model not in names:
            raise ValueError(f"gateway.default_model: {self.gateway.default_model!r} is not a configured model")
        for t in self.gateway.tenants:
            for m in t.allowed_models:
                if m not in names and m != "auto":
                    raise ValueError(f"gateway.tenants.{t.name}.allowed_models: unknown model {m!r}")
        return self

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def default_model(self) -> str:
        return self.gateway.default_model or self.models[0].name


def _field_path(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic error location, naming list items by their `name` when they have one."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list):
            elem = node[item] if item < len(node) else None
            label = elem.get("name") if isinstance(elem, dict) else None
            parts.append(str(label) if label else f"[{item}]")
            node = elem
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def parse_config(data: Any, source: str = "config") -> TurnoutConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'models' list")
    try:
        return TurnoutConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = _field_path(tuple(err["loc"]), data) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}: {msg}") from None


def load_config(path: str | Path | None = None) -> TurnoutConfig:
    """Load and validate a config file; None loads the embedded default."""
    if path is None:
        text = resources.files("deploy").joinpath("default.yaml").read_text()
        source = "embedded default config"
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{path}: no such config file")
        text, source = p.read_text(), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}:{where} is not valid YAML") from None
    return parse_config(data, source)
