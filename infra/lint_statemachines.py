#!/usr/bin/env python3
"""Lint every state machine of infra/template.yaml with statelint, after substitution.

statelint rejects `${...}` in `Resource`, so each definition is linted as it will deploy:
every `${Key}` replaced by an ARN of the kind its substitution names. Also checks that the
definition and its `DefinitionSubstitutions` agree exactly (no missing, no unused key).
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def fake_arn(key: str) -> str:
    if key.endswith("FunctionArn"):
        return f"arn:aws:lambda:us-east-1:123456789012:function:{key[:-3]}"
    if key.endswith("StateMachineArn"):
        return f"arn:aws:states:us-east-1:123456789012:stateMachine:{key[:-3]}"
    if key.endswith("TableName"):
        return key
    if key.endswith("Arn"):
        return f"arn:aws:sns:us-east-1:123456789012:{key[:-3]}"
    return key


def main() -> int:
    template, matches = decode_str(TEMPLATE.read_text())
    if matches:
        print("\n".join(str(m) for m in matches))
        return 1
    failures = 0
    machines = {
        name: res for name, res in template["Resources"].items()
        if res.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
    }
    if not machines:
        print("no state machines in the template")
        return 1
    for name, res in sorted(machines.items()):
        props = res.get("Properties", {})
        path = (TEMPLATE.parent / props["DefinitionUri"]).resolve()
        text = path.read_text()
        subs = props.get("DefinitionSubstitutions", {}) or {}
        used = set(PLACEHOLDER.findall(text))
        missing = sorted(used - set(subs))
        unused = sorted(set(subs) - used)
        if missing or unused:
            print(f"{name} ({path.relative_to(ROOT)}): missing substitutions {missing}, unused {unused}")
            failures += 1
        rendered = PLACEHOLDER.sub(lambda m: fake_arn(m.group(1)), text)
        json.loads(rendered)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(rendered)
        result = subprocess.run([sys.executable, "-m", "statelint", f.name], capture_output=True, text=True)
        out = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or (out and "valid" not in out.lower()):
            print(f"{name} ({path.relative_to(ROOT)}): statelint:\n{out}")
            failures += 1
        else:
            print(f"{name} ({path.relative_to(ROOT)}): ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
