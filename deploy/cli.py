"""The `turnout` command line.

turnout serve [--config FILE]     run the platform (embedded default without --config)
turnout config check FILE         validate a config file
Other packages add their commands through `<pkg>.cli.register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from deploy.config import ConfigError, load_config

# Packages that may contribute subcommands (a package without cli.py is skipped).
COMMAND_PACKAGES = ("router", "cache", "migration", "deploy.kuberay_cli")


def _fail(msg: str) -> int:
    print(f"turnout: error: {msg}", file=sys.stderr)
    return 2


def preflight(cfg) -> None:
    """What must hold before anything starts, so it fails here and not at a first request:
    the router's artifact loads (a missing or corrupt one raises ArtifactError)."""
    if cfg.router.enabled:
        from router.artifact import load_predictors

        load_predictors(cfg.router.artifact)


def _load_checked(path: str | None):
    from router.artifact import ArtifactError

    cfg = load_config(path)
    try:
        preflight(cfg)
    except ArtifactError as e:
        raise ConfigError(f"{path or 'default config'}: router.artifact: {e}") from None
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from deploy.serve_local import serve_forever

    try:
        cfg = _load_checked(args.config)
    except ConfigError as e:
        return _fail(str(e))
    if args.port:
        cfg.gateway.port = args.port
    if args.host:
        cfg.gateway.host = args.host
    return serve_forever(cfg, block=not args.no_block)


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        cfg = _load_checked(args.file)
    except ConfigError as e:
        return _fail(str(e))
    print(f"{args.file}: ok ({len(cfg.models)} models: {', '.join(m.name for m in cfg.models)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnout", description="Multi-model LLM serving on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the platform (embedded default config without --config)")
    p.add_argument("--config", help="Turnout YAML config file")
    p.add_argument("--host", help="override gateway.host")
    p.add_argument("--port", type=int, help="override gateway.port")
    p.add_argument("--no-block", action="store_true", help="return once the platform is ready")
    p.set_defaults(func=cmd_serve)
    c = sub.add_parser("config", help="config file tools")
    csub = c.add_subparsers(dest="config_command", required=True)
    chk = csub.add_parser("check", help="validate a config file")
    chk.add_argument("file")
    chk.set_defaults(func=cmd_config_check)
    for name in COMMAND_PACKAGES:
        modname = f"{name}.cli" if "." not in name else name
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
