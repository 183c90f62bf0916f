"""The functions the benchmarks measure, discovered rather than listed (issue 21): every
`AWS::Serverless::Function` of `infra/template.yaml` with its `Metadata.BuildProperties.Binary`,
its resolved environment (the local provisioning's own plan, `local/batchless_local/cfn.py`) and
the Cargo package that builds that binary (`cargo metadata`). A move of the function crates or a
renamed binary needs no change here.

    python bench/functions.py                 # binary, package, function name per line
    python bench/functions.py --cargo-args    # -p PKG ... for every function (+ the empty function)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
EMPTY = "empty-function"  # bench/empty-function: the start-up floor


@dataclass
class Function:
    logical_id: str
    binary: str
    name: str  # the deployed function name, e.g. batchless-staging-lock
    environment: dict[str, str] = field(default_factory=dict)
    package: str | None = None

    @property
    def short_name(self) -> str:
        """The name without the stack prefix (batchless-staging-lock → lock)."""
        prefix = "batchless-staging-"
        return self.name[len(prefix):] if self.name.startswith(prefix) else self.name


def from_template(template: str = TEMPLATE) -> list[Function]:
    sys.path.insert(0, os.path.join(ROOT, "local"))
    from batchless_local.cfn import build_plan  # noqa: PLC0415 (needs local/ on the path)

    plan = build_plan(template)
    out = []
    for r in plan["resources"]:
        if r.get("type") != "AWS::Serverless::Function" or not r.get("binary"):
            continue
        env = ((r.get("properties") or {}).get("Environment") or {}).get("Variables") or {}
        out.append(Function(r["logical_id"], r["binary"], r["physical_name"],
                            {k: str(v) for k, v in env.items()}))
    packages = binary_packages()
    for f in out:
        f.package = packages.get(f.binary)
    return sorted(out, key=lambda f: f.binary)


def binary_packages() -> dict[str, str]:
    """binary name → the workspace package that builds it."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, check=True,
        capture_output=True, text=True).stdout)
    return {t["name"]: p["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cargo-args", action="store_true",
                    help="print `-p PKG` for every function's package and the empty function's")
    args = ap.parse_args()
    fns = from_template()
    missing = [f.binary for f in fns if not f.package]
    if missing:
        print(f"functions.py: no workspace package builds {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.cargo_args:
        pkgs = sorted({f.package for f in fns} | {binary_packages().get(EMPTY, EMPTY)})
        print(" ".join(f"-p {p}" for p in pkgs))
    else:
        for f in fns:
            print(f"{f.binary}\t{f.package}\t{f.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
