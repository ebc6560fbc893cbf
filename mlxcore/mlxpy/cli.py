"""The ``mlxpy`` command."""

from __future__ import annotations

import argparse
import json
import sys

from mlxpy import __version__


def _plugins(args: argparse.Namespace) -> int:
    from mlxpy.plugins import get_plugins

    rows = get_plugins().describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else "(in-process)"
        print(f"{row['name']}  [{dist}]  {row['status']}")
        if row["provides"]:
            print(f"    provides: {', '.join(row['provides'])}")
        if row["hooks"]:
            print(f"    hooks:    {', '.join(row['hooks'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlxpy", description="mlxpy experiment manager")
    parser.add_argument("--version", action="version", version=f"mlxpy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list installed plugins and what they provide")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=_plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
