"""SAM/CloudFormation template → provisioning plan (pure: no I/O besides reading files).

`build_plan(template_path, environment, params)` returns a dict with the resolved
resources in dependency order.  `provision.py` walks the same code with a callback
that really creates each resource and feeds the real attributes (ARNs) back, so that
later resources resolve against what exists.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any, Callable

import yaml

from . import ACCOUNT, REGION

PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"


class PlanError(Exception):
    pass


# --------------------------------------------------------------------------- YAML


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag_constructor(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> Any:
    name = tag_suffix
    key = "Ref" if name == "Ref" else ("Condition" if name == "Condition" else f"Fn::{name}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


_CfnLoader.add_multi_constructor("!", _tag_constructor)


def load_template(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith(".json"):
        return json.loads(text)
    data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not a template (top level is not a mapping)")
    return data


# --------------------------------------------------------------------------- helpers

NOVALUE = object()


def kebab(name: str) -> str:
    s = re.sub(r"Function$", "", name) or name
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", s)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"-\1", s)
    return s.lower()


def _strip_novalue(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_novalue(v) for k, v in value.items() if v is not NOVALUE}
    if isinstance(value, list):
        return [_strip_novalue(v) for v in value if v is not NOVALUE]
    return value


_SUB_RE = re.compile(r"\$\{([^}]*)\}")


def _sub_refs(text: str) -> list[str]:
    out = []
    for m in _SUB_RE.finditer(text):
        inner = m.group(1)
        if inner.startswith("!"):
            continue
        out.append(inner.strip())
    return out


def collect_deps(node: Any, resources: set[str], sub_vars: set[str] | None = None) -> set[str]:
    deps: set[str] = set()
    if isinstance(node, dict):
        if len(node) == 1:
            (k, v), = node.items()
            if k == "Ref" and isinstance(v, str) and v in resources:
                deps.add(v)
                return deps
            if k == "Fn::GetAtt":
                target = v[0] if isinstance(v, list) else str(v).split(".")[0]
                if target in resources:
                    deps.add(target)
                return deps
            if k == "Fn::Sub":
                if isinstance(v, list):
                    text, variables = v[0], (v[1] if len(v) > 1 else {})
                    deps |= collect_deps(variables, resources)
                    local = set(variables.keys()) if isinstance(variables, dict) else set()
                else:
                    text, local = v, set()
                for ref in _sub_refs(text):
                    base = ref.split(".")[0]
                    if base in resources and ref not in local and base not in local:
                        deps.add(base)
                return deps
        for v in node.values():
            deps |= collect_deps(v, resources)
    elif isinstance(node, list):
        for v in node:
            deps |= collect_deps(v, resources)
    return deps


# --------------------------------------------------------------------------- resolver


class Resolver:
    def __init__(self, template: dict, params: dict[str, Any], pseudo: dict[str, Any],
                 attrs: dict[str, dict[str, Any]]):
        self.template = template
        self.params = params
        self.pseudo = pseudo
        self.attrs = attrs
        self.mappings = template.get("Mappings") or {}
        self.conditions_src = template.get("Conditions") or {}
        self.conditions: dict[str, bool] = {}
        self.resources = set((template.get("Resources") or {}).keys())

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            if name not in self.conditions_src:
                raise PlanError(f"unknown condition {name!r}")
            self.conditions[name] = bool(self.ev(self.conditions_src[name]))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            if name not in self.attrs:
                raise PlanError(f"Ref {name}: resource not resolved yet (dependency cycle?)")
            return self.attrs[name]["Ref"]
        raise PlanError(f"Ref to unknown name {name!r}")

    def getatt(self, name: str, attr: str) -> Any:
        if name not in self.resources:
            raise PlanError(f"GetAtt on unknown resource {name!r}")
        if name not in self.attrs:
            raise PlanError(f"GetAtt {name}.{attr}: resource not resolved yet")
        a = self.attrs[name]
        if attr not in a:
            raise PlanError(f"GetAtt {name}.{attr}: attribute not supported by the replica "
                            f"(known: {sorted(k for k in a if k != 'Ref')})")
        return a[attr]

    def sub(self, text: str, variables: dict[str, Any] | None = None) -> str:
        variables = variables or {}

        def repl(m: re.Match) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            key = inner.strip()
            if key in variables:
                val = variables[key]
            elif "." in key and key.split(".")[0] in self.resources:
                res, attr = key.split(".", 1)
                val = self.getatt(res, attr)
            else:
                val = self.ref(key)
            if isinstance(val, list):
                val = ",".join(str(x) for x in val)
            return str(val)

        return _SUB_RE.sub(repl, text)

    def ev(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self.ev(v) for v in node]
            return [v for v in out if v is not NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (k, v), = node.items()
            if k == "Ref":
                if v == "AWS::NoValue":
                    return NOVALUE
                return self.ref(v)
            if k == "Fn::GetAtt":
                if isinstance(v, str):
                    v = v.split(".", 1)
                name, attr = self.ev(v[0]), self.ev(v[1])
                return self.getatt(name, attr)
            if k == "Fn::Sub":
                if isinstance(v, list):
                    variables = {kk: self.ev(vv) for kk, vv in (v[1] if len(v) > 1 else {}).items()}
                    return self.sub(self.ev(v[0]), variables)
                return self.sub(v)
            if k == "Fn::Join":
                sep, items = v
                items = self.ev(items)
                return self.ev(sep).join(str(x) for x in items)
            if k == "Fn::Select":
                idx, items = v
                items = self.ev(items)
                return items[int(self.ev(idx))]
            if k == "Fn::Split":
                sep, text = v
                return str(self.ev(text)).split(self.ev(sep))
            if k == "Fn::If":
                cond, a, b = v
                return self.ev(a) if self.condition(cond) else self.ev(b)
            if k == "Fn::Equals":
                a, b = (self.ev(x) for x in v)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not self.ev(v[0])
            if k == "Fn::And":
                return all(self.ev(x) for x in v)
            if k == "Fn::Or":
                return any(self.ev(x) for x in v)
            if k == "Condition" and isinstance(v, str):
                return self.condition(v)
            if k == "Fn::FindInMap":
                m, top, second = (self.ev(x) for x in v[:3])
                try:
                    return self.mappings[m][top][second]
                except KeyError as exc:
                    if len(v) > 3 and isinstance(v[3], dict) and "DefaultValue" in v[3]:
                        return self.ev(v[3]["DefaultValue"])
                    raise PlanError(f"FindInMap {m}/{top}/{second}: not found") from exc
            if k == "Fn::Base64":
                import base64
                return base64.b64encode(str(self.ev(v)).encode()).decode()
            if k == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
            if k == "Fn::ToJsonString":
                return json.dumps(_strip_novalue(self.ev(v)), separators=(",", ":"))
            if k == "Fn::Length":
                return len(self.ev(v))
            if k == "Fn::ImportValue":
                raise PlanError("Fn::ImportValue is not supported by the replica")
        out = {}
        for kk, vv in node.items():
            r = self.ev(vv)
            if r is not NOVALUE:
                out[kk] = r
        return out


# --------------------------------------------------------------------------- types

SUPPORTED = {
    "AWS::Serverless::Function", "AWS::Lambda::Function",
    "AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine",
    "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::Events::Rule",
    "AWS::Scheduler::Schedule", "AWS::CodeBuild::Project", "AWS::ECS::Cluster",
    "AWS::ECS::TaskDefinition", "AWS::SecretsManager::Secret", "AWS::SSM::Parameter",
    "AWS::Logs::LogGroup", "AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::IAM::Role",
    "AWS::Logs::SubscriptionFilter", "AWS::KMS::Key", "AWS::KMS::Alias",
}

NAME_PROP = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Events::Rule": "Name",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::CodeBuild::Project": "Name",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::ECS::TaskDefinition": "Family",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Logs::SubscriptionFilter": "FilterName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::IAM::Role": "RoleName",
    "AWS::KMS::Alias": "AliasName",
}

SKIP_REASONS = {
    "AWS::IAM::Policy": "IAM policies are not enforced by the replica",
    "AWS::IAM::ManagedPolicy": "IAM policies are not enforced by the replica",
    "AWS::Lambda::Permission": "resource policies are not enforced by the replica",
    "AWS::Events::EventBus": "only the default event bus is replicated",
    "AWS::CodePipeline::Pipeline": "CodePipeline is not replicated (the Step Functions side is)",
    "AWS::CloudWatch::Alarm": "alarms are not replicated",
    "AWS::SNS::Subscription": "subscriptions are not delivered by the replica",
    "AWS::SNS::TopicPolicy": "resource policies are not enforced by the replica",
    "AWS::SQS::QueuePolicy": "resource policies are not enforced by the replica",
    "AWS::S3::BucketPolicy": "resource policies are not enforced by the replica",
    "AWS::Scheduler::ScheduleGroup": "schedules all live in the default group locally",
    "AWS::EC2::SecurityGroup": "no VPC locally",
    "AWS::Lambda::Url": "function URLs are served from the function's FunctionUrlConfig",
}


def _name_for(stack: str, lid: str, rtype: str, props: dict) -> str:
    prop = NAME_PROP.get(rtype)
    if prop and props.get(prop):
        return str(props[prop])
    name = f"{stack}-{lid}"
    if rtype == "AWS::S3::Bucket":
        name = name.lower()
    if rtype == "AWS::SSM::Parameter":
        name = f"CFN-{lid}"
    return name[:64] if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function",
                                  "AWS::IAM::Role", "AWS::Events::Rule") else name


def predicted_attrs(rtype: str, name: str, stack: str, lid: str, endpoint: str | None = None) -> dict[str, Any]:
    r, a = REGION, ACCOUNT
    if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
        arn = f"arn:{PARTITION}:lambda:{r}:{a}:function:{name}"
        return {"Ref": name, "Arn": arn, "Name": name}
    if rtype in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
        arn = f"arn:{PARTITION}:states:{r}:{a}:stateMachine:{name}"
        return {"Ref": arn, "Arn": arn, "Name": name}
    if rtype == "AWS::DynamoDB::Table":
        arn = f"arn:{PARTITION}:dynamodb:{r}:{a}:table/{name}"
        return {"Ref": name, "Arn": arn, "StreamArn": f"{arn}/stream/replica"}
    if rtype == "AWS::S3::Bucket":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:s3:::{name}",
                "DomainName": f"{name}.s3.{URL_SUFFIX}",
                "RegionalDomainName": f"{name}.s3.{r}.{URL_SUFFIX}"}
    if rtype == "AWS::Events::Rule":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:events:{r}:{a}:rule/{name}"}
    if rtype == "AWS::Scheduler::Schedule":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:scheduler:{r}:{a}:schedule/default/{name}"}
    if rtype == "AWS::CodeBuild::Project":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:codebuild:{r}:{a}:project/{name}"}
    if rtype == "AWS::ECS::Cluster":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:ecs:{r}:{a}:cluster/{name}"}
    if rtype == "AWS::ECS::TaskDefinition":
        arn = f"arn:{PARTITION}:ecs:{r}:{a}:task-definition/{name}:1"
        return {"Ref": arn, "TaskDefinitionArn": arn, "Arn": arn}
    if rtype == "AWS::SecretsManager::Secret":
        arn = f"arn:{PARTITION}:secretsmanager:{r}:{a}:secret:{name}-000000"
        return {"Ref": arn, "Id": arn, "Arn": arn}
    if rtype == "AWS::SSM::Parameter":
        return {"Ref": name, "Type": "String",
                "Arn": f"arn:{PARTITION}:ssm:{r}:{a}:parameter/{name.lstrip('/')}"}
    if rtype == "AWS::Logs::LogGroup":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:logs:{r}:{a}:log-group:{name}:*"}
    if rtype == "AWS::SNS::Topic":
        arn = f"arn:{PARTITION}:sns:{r}:{a}:{name}"
        return {"Ref": arn, "TopicArn": arn, "TopicName": name, "Arn": arn}
    if rtype == "AWS::SQS::Queue":
        url = f"{endpoint or 'http://localhost'}/{a}/{name}"
        return {"Ref": url, "QueueUrl": url, "QueueName": name,
                "Arn": f"arn:{PARTITION}:sqs:{r}:{a}:{name}"}
    if rtype == "AWS::IAM::Role":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:iam::{a}:role/{name}", "RoleId": f"AROA{lid.upper()[:16]}"}
    if rtype == "AWS::KMS::Key":
        # Provisioning replaces these with the created key's id and ARN.
        return {"Ref": f"{stack}-{lid}", "KeyId": f"{stack}-{lid}",
                "Arn": f"arn:{PARTITION}:kms:{r}:{a}:key/{stack}-{lid}"}
    if rtype == "AWS::KMS::Alias":
        return {"Ref": name}
    # skipped types: something well-formed, so references still resolve
    svc = rtype.split("::")[1].lower() if rtype.count("::") >= 2 else "unknown"
    return {"Ref": f"{stack}-{lid}", "Arn": f"arn:{PARTITION}:{svc}:{r}:{a}:{lid}",
            "Name": f"{stack}-{lid}"}


# --------------------------------------------------------------------------- plan


def _toposort(resources: dict[str, dict], resolver_resources: set[str], globals_: dict) -> list[str]:
    deps: dict[str, set[str]] = {}
    for lid, res in resources.items():
        d = collect_deps(_merge_globals(globals_, res.get("Type", ""), res.get("Properties") or {}), resolver_resources)
        if res.get("Condition"):
            d |= set()
        dep_on = res.get("DependsOn") or []
        if isinstance(dep_on, str):
            dep_on = [dep_on]
        d |= {x for x in dep_on if x in resources}
        d.discard(lid)
        deps[lid] = {x for x in d if x in resources}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise PlanError("dependency cycle: " + " -> ".join(stack + [n]))
        state[n] = 1
        for m in sorted(deps[n]):
            visit(m, stack + [n])
        state[n] = 2
        order.append(n)

    for n in resources:  # template order, deps first
        visit(n, [])
    return order


def _merge_globals(globals_: dict, rtype: str, props: dict) -> dict:
    key = {"AWS::Serverless::Function": "Function", "AWS::Serverless::StateMachine": "StateMachine"}.get(rtype)
    if not key or key not in globals_:
        return props
    g = copy.deepcopy(globals_[key])
    out = dict(g)
    for k, v in props.items():
        if k in out and isinstance(out[k], dict) and isinstance(v, dict):
            merged = copy.deepcopy(out[k])
            for kk, vv in v.items():
                if kk in merged and isinstance(merged[kk], dict) and isinstance(vv, dict):
                    merged[kk] = {**merged[kk], **vv}
                else:
                    merged[kk] = vv
            out[k] = merged
        elif k in out and isinstance(out[k], list) and isinstance(v, list):
            out[k] = out[k] + v
        else:
            out[k] = v
    return out


def _coerce_param(spec: dict, value: Any) -> Any:
    t = str(spec.get("Type", "String"))
    if t in ("CommaDelimitedList",) or t.startswith("List<"):
        if isinstance(value, list):
            return [str(v) for v in value]
        return [v.strip() for v in str(value).split(",")] if value != "" else []
    if t == "Number":
        return str(value)
    return str(value) if not isinstance(value, str) else value


def _apply_substitutions(text: str, subs: dict[str, Any], where: str) -> str:
    for k, v in subs.items():
        text = text.replace("${" + k + "}", str(v))
    left = sorted(set(re.findall(r"\$\{[^}]*\}", text)))
    if left:
        raise PlanError(f"{where}: unreplaced substitution(s) {', '.join(left)} "
                        f"(no DefinitionSubstitutions entry for them)")
    return text


def build_plan(template_path: str, environment: str = "staging", params: dict[str, str] | None = None,
               on_resource: Callable[[dict], dict[str, Any] | None] | None = None,
               endpoint: str | None = None) -> dict[str, Any]:
    """Resolve the template into an ordered provisioning plan.

    Pure unless `on_resource` is given: then it is called for each planned resource
    (in dependency order) and may return the real attributes to use for later
    references (e.g. a Secrets Manager ARN with its random suffix).
    """
    template_path = os.path.abspath(template_path)
    tpl = load_template(template_path)
    stack = f"batchless-{environment}"
    pseudo = {
        "AWS::StackName": stack, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
        "AWS::Partition": PARTITION, "AWS::URLSuffix": URL_SUFFIX,
        "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/replica",
        "AWS::NotificationARNs": [],
    }
    params = dict(params or {})
    resolved_params: dict[str, Any] = {}
    pspecs = tpl.get("Parameters") or {}
    # an explicit Environment-like parameter follows --env unless overridden
    for pname, spec in pspecs.items():
        spec = spec or {}
        if pname in params:
            val = params.pop(pname)
        elif pname.lower() in ("environment", "env", "stage", "environmentname") and "AllowedValues" in spec \
                and environment in spec["AllowedValues"]:
            val = environment
        elif "Default" in spec:
            val = spec["Default"]
        else:
            raise PlanError(f"parameter {pname} has no Default; pass --param {pname}=VALUE")
        allowed = spec.get("AllowedValues")
        if allowed and str(val) not in [str(x) for x in allowed]:
            raise PlanError(f"parameter {pname}={val!r} not in AllowedValues {allowed}")
        resolved_params[pname] = _coerce_param(spec, val)
    if params:
        raise PlanError(f"unknown parameter(s): {', '.join(sorted(params))}")

    resources: dict[str, dict] = tpl.get("Resources") or {}
    globals_ = tpl.get("Globals") or {}
    attrs: dict[str, dict[str, Any]] = {}
    resolver = Resolver(tpl, resolved_params, pseudo, attrs)

    # SAM implicit roles (FunctionNameRole / StateMachineNameRole) so GetAtt on them resolves.
    implicit: dict[str, dict] = {}
    for lid, res in resources.items():
        if res.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine") \
                and not (res.get("Properties") or {}).get("Role"):
            rname = f"{stack}-{lid}Role"[:64]
            attrs[f"{lid}Role"] = predicted_attrs("AWS::IAM::Role", rname, stack, f"{lid}Role")
            implicit[f"{lid}Role"] = {"name": rname}
    resolver.resources |= set(implicit)

    order = _toposort(resources, resolver.resources, globals_)
    entries: list[dict] = []
    base_dir = os.path.dirname(template_path)
    lambda_env: dict[str, tuple[str, str]] = {}
    for lid in order:
        res = resources[lid]
        rtype = res.get("Type", "")
        entry: dict[str, Any] = {"logical_id": lid, "type": rtype}
        cond = res.get("Condition")
        if cond and not resolver.condition(cond):
            entry.update(action="skipped", reason=f"condition {cond} is false")
            attrs[lid] = predicted_attrs(rtype, f"{stack}-{lid}", stack, lid)
            entries.append(entry)
            continue
        raw_props = _merge_globals(globals_, rtype, res.get("Properties") or {})
        try:
            props = _strip_novalue(resolver.ev(raw_props))
        except PlanError as exc:
            raise PlanError(f"{lid}: {exc}") from exc
        name = _name_for(stack, lid, rtype, props)
        entry["physical_name"] = name
        entry["depends_on"] = sorted(collect_deps(raw_props, resolver.resources) - {lid})
        entry["properties"] = props
        if rtype not in SUPPORTED:
            entry.update(action="skipped", reason=SKIP_REASONS.get(rtype, "resource type not replicated"))
            attrs[lid] = predicted_attrs(rtype, name, stack, lid)
            entries.append(entry)
            continue
        entry["action"] = "create"
        attrs[lid] = predicted_attrs(rtype, name, stack, lid, endpoint)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            meta = res.get("Metadata") or {}
            binary = ((meta.get("BuildProperties") or {}).get("Binary")) or kebab(lid)
            entry["binary"] = str(binary)
            variables = ((props.get("Environment") or {}).get("Variables")) or {}
            entry["environment"] = {k: str(v) for k, v in variables.items()}
            for k, v in entry["environment"].items():
                if k in lambda_env and lambda_env[k][1] != v:
                    raise PlanError(
                        f"environment variable {k} differs between functions {lambda_env[k][0]} "
                        f"({lambda_env[k][1]!r}) and {lid} ({v!r}); cargo lambda watch gives every "
                        f"function one environment (replica limitation, see local/README.md)")
                lambda_env.setdefault(k, (lid, v))
            if props.get("FunctionUrlConfig") is not None:
                entry["function_url"] = True
                entry["function_url_auth"] = (props["FunctionUrlConfig"] or {}).get("AuthType", "NONE")
            entry["events"] = props.get("Events") or {}
        if rtype in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            entry["definition"] = _state_machine_definition(lid, rtype, props, base_dir)
        entries.append(entry)
        entry["attrs"] = attrs[lid]
        if on_resource is not None:
            real = on_resource(entry)
            if real:
                attrs[lid].update(real)

    return {
        "template": template_path,
        "stack_name": stack,
        "environment": environment,
        "region": REGION,
        "account": ACCOUNT,
        "parameters": resolved_params,
        "conditions": {c: resolver.condition(c) for c in (tpl.get("Conditions") or {})},
        "resources": entries,
        "implicit_roles": implicit,
        "lambda_environment": {k: v for k, (_, v) in lambda_env.items()},
    }


def _state_machine_definition(lid: str, rtype: str, props: dict, base_dir: str) -> str:
    subs = dict(props.get("DefinitionSubstitutions") or {})
    if rtype == "AWS::Serverless::StateMachine":
        if props.get("DefinitionUri"):
            uri = props["DefinitionUri"]
            if not isinstance(uri, str):
                raise PlanError(f"{lid}: DefinitionUri as an S3 location is not supported locally")
            path = os.path.normpath(os.path.join(base_dir, uri))
            if not os.path.exists(path):
                raise PlanError(f"{lid}: DefinitionUri {uri} not found ({path})")
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            if path.endswith((".yaml", ".yml")):
                text = json.dumps(yaml.safe_load(text))
        elif props.get("Definition") is not None:
            text = json.dumps(props["Definition"])
        else:
            raise PlanError(f"{lid}: state machine has neither DefinitionUri nor Definition")
    else:
        if props.get("DefinitionString") is not None:
            d = props["DefinitionString"]
            text = d if isinstance(d, str) else json.dumps(d)
        elif props.get("Definition") is not None:
            text = json.dumps(props["Definition"])
        elif props.get("DefinitionS3Location"):
            raise PlanError(f"{lid}: DefinitionS3Location is not supported locally")
        else:
            raise PlanError(f"{lid}: state machine has no definition")
    text = _apply_substitutions(text, subs, f"{lid} definition")
    try:
        json.loads(text)
    except ValueError as exc:
        raise PlanError(f"{lid}: definition is not valid JSON after substitution: {exc}") from exc
    return text
