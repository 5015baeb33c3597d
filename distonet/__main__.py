"""distonet's command line for what is not a doit task: recipe checks, schema, deploy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import DistonetError
from .paths import Paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distonet")
    sub = parser.add_subparsers(dest="cmd", required=True)
    check = sub.add_parser("check", help="validate recipes (all when none named)")
    check.add_argument("recipes", nargs="*")
    sub.add_parser("schema", help="print the recipe JSON Schema")
    sub.add_parser("prune", help="remove stage snapshots that no manifest in output/ uses")
    deploy = sub.add_parser("deploy-lvm", help="create an LV of exactly rootfs.img's size, copy, verify")
    deploy.add_argument("manifest", type=Path)
    deploy.add_argument("vg")
    deploy.add_argument("lv")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "check":
            from .recipe import known_recipes, load_recipe
            paths = Paths.default()
            for name in args.recipes or known_recipes(paths.recipes):
                load_recipe(name, paths.recipes)
                print(f"{name}: ok")
        elif args.cmd == "schema":
            from .recipe import json_schema
            print(json.dumps(json_schema(), indent=2))
        elif args.cmd == "prune":
            from .build import prune
            removed = prune(Paths.default())
            print(f"prune: removed {len(removed)} snapshot(s)")
        elif args.cmd == "deploy-lvm":
            from .deploy import deploy_lvm
            print(deploy_lvm(args.manifest, args.vg, args.lv))
    except DistonetError as exc:
        print(f"distonet: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
