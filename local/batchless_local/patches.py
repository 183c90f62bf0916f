"""Every patch the replica makes onto moto's internals, in one registry.

A patch names its target by dotted path (`moto.codebuild.responses.CodeBuildResponse.start_build`:
the module, then attributes) and the row of local/README.md's "moto gaps closed" table it belongs to
(the row's patch cell starts with that text; local/tests/test_patches.py checks the table against
this registry). The replacements come from one function per group (`codebuild.codebuild_replacements`,
...), called with the originals by attribute name and returning the replacements by attribute name.

`apply()` first resolves every target and fails, before changing anything, with an error naming each
target moto no longer has (or whose original, which the replacement calls, is not callable; or, for
an attribute the replica adds, that moto has now): a moto upgrade that moves one fails at start, not
in the middle of a scenario. Applying again changes
nothing (a replacement is never wrapped a second time).
"""

from __future__ import annotations

import importlib
import types
from dataclasses import dataclass
from typing import Any, Callable

from . import cloudtrail, codebuild, ecs, events, lambda_bridge, logs, sfn


@dataclass(frozen=True)
class Patch:
    target: str  # module path, then attribute path
    row: str  # local/README.md "moto gaps closed": the row whose patch cell starts with this
    wraps: bool = False  # the replacement calls the original, which must then be callable
    adds: bool = False  # moto has no such attribute: the owner must exist, the attribute must not (yet)

    @property
    def attribute(self) -> str:
        return self.target.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Group:
    replacements: Callable[[dict[str, Any]], dict[str, Any]]  # originals -> replacements, by attribute name
    patches: tuple[Patch, ...]

    def __post_init__(self) -> None:
        names = [p.attribute for p in self.patches]
        assert len(set(names)) == len(names), f"a group's attribute names must differ: {names}"


class PatchTargetMissing(RuntimeError):
    """moto no longer has something the replica patches."""


LAMBDA = "Lambda bridge"
CODEBUILD = "CodeBuild runs builds for real"
ECS = "ECS RunTask runs the command for real"
EVENTS = "EventBridge delivers to Lambda"
SFN = "Step Functions Execution Status Change events"
LOGS_SUBSCRIPTION = "CloudWatch Logs subscription filters deliver like AWS"
LOGS_PAGES = "CloudWatch Logs GetLogEvents pages"
TIME_SCALE = "Time scale"
DYNAMODB = "DynamoDB writes serialized under one lock"
CLOUDTRAIL = "CloudTrail"
ECS_EXEC = "ECS ExecuteCommand"

_ASL = "moto.stepfunctions.parser.asl"


def _group(replacements: Callable[[dict[str, Any]], dict[str, Any]], row: str, owner: str,
           *attributes: str, wraps: bool = False) -> Group:
    """One owner's attributes, all in one row."""
    return Group(replacements, tuple(Patch(f"{owner}.{a}", row, wraps) for a in attributes))


GROUPS: tuple[Group, ...] = (
    Group(lambda_bridge.lambda_replacements, (
        Patch("moto.awslambda.models.LambdaFunction._invoke_lambda", LAMBDA),
        Patch("moto.awslambda.responses.LambdaResponse.invoke", LAMBDA, wraps=True),
        Patch("moto.awslambda.responses.LambdaResponse.invoke_async", LAMBDA),
    )),
    _group(codebuild.codebuild_replacements, CODEBUILD, "moto.codebuild.responses.CodeBuildResponse",
           "start_build", "batch_get_builds", "stop_build", "list_builds", "list_builds_for_project"),
    _group(ecs.ecs_replacements, ECS, "moto.ecs.responses.EC2ContainerServiceResponse",
           "run_task", "describe_tasks", "list_tasks", "stop_task"),
    Group(ecs.ecs_exec_replacements, (
        Patch("moto.ecs.responses.EC2ContainerServiceResponse.execute_command", ECS_EXEC, adds=True),
    )),
    Group(events.events_replacements, (
        Patch("moto.events.models.Rule.send_to_targets", EVENTS, wraps=True),
        Patch("moto.events.models.EventsBackend.put_events", EVENTS, wraps=True),
    )),
    Group(sfn.stepfunctions_replacements, (
        Patch("moto.stepfunctions.parser.models.StepFunctionsParserBackend.start_execution", SFN, wraps=True),
        Patch("moto.stepfunctions.parser.backend.execution.BaseExecutionWorkerCommunication.terminated", SFN,
              wraps=True),
        Patch("moto.stepfunctions.parser.backend.execution.Execution.stop", SFN, wraps=True),
    )),
    Group(logs.logs_replacements, (
        Patch("moto.logs.models.LogStream._send_log_events", LOGS_SUBSCRIPTION, wraps=True),
        Patch("moto.logs.models.LogStream.get_log_events", LOGS_PAGES, wraps=True),
    )),
    Group(sfn.time_scale_replacements, (
        Patch(f"{_ASL}.component.state.wait.wait_function.wait_function.WaitFunction._wait_interval", TIME_SCALE),
        Patch(f"{_ASL}.component.common.retry.retrier_decl.time", TIME_SCALE),
        Patch(f"{_ASL}.component.common.timeouts.timeout.Timeout._eval_body", TIME_SCALE),
        Patch(f"{_ASL}.eval.callback.callback.HeartbeatEndpoint.__init__", TIME_SCALE, wraps=True),
        Patch(f"{_ASL}.component.program.program.Program.eval", TIME_SCALE),
    )),
    _group(sfn.dynamodb_lock_replacements, DYNAMODB, "moto.dynamodb.responses.DynamoHandler",
           "put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item", wraps=True),
    Group(cloudtrail.cloudtrail_replacements, (
        Patch("moto.stepfunctions.responses.StepFunctionResponse.start_execution", CLOUDTRAIL, wraps=True),
        Patch("moto.scheduler.responses.EventBridgeSchedulerResponse.update_schedule", CLOUDTRAIL, wraps=True),
        Patch("moto.cloudtrail.responses.CloudTrailResponse.lookup_events", CLOUDTRAIL, adds=True),
        Patch("moto.kms.responses.KmsResponse.put_key_policy", CLOUDTRAIL, wraps=True),
        Patch("moto.awslambda.responses.LambdaResponse.update_function_code", CLOUDTRAIL, wraps=True),
        Patch("moto.awslambda.responses.LambdaResponse.update_function_configuration", CLOUDTRAIL, wraps=True),
        Patch("moto.awslambda.responses.LambdaResponse.create_function", CLOUDTRAIL, wraps=True),
        Patch("moto.iam.responses.IamResponse.update_assume_role_policy", CLOUDTRAIL, wraps=True),
        Patch("moto.iam.responses.IamResponse.put_role_policy", CLOUDTRAIL, wraps=True),
        Patch("moto.iam.responses.IamResponse.attach_role_policy", CLOUDTRAIL, wraps=True),
    )),
)


def registered(groups: tuple[Group, ...] = GROUPS) -> list[Patch]:
    return [p for g in groups for p in g.patches]


def owner_of(target: str) -> Any:
    """The module or class holding a dotted target's attribute; LookupError naming the first part missing."""
    parts = target.split(".")
    try:
        obj: Any = importlib.import_module(parts[0])
    except ModuleNotFoundError:
        raise LookupError(f"no module {parts[0]}") from None
    path = parts[0]
    for name in parts[1:-1]:
        if hasattr(obj, name):
            obj = getattr(obj, name)
        elif isinstance(obj, types.ModuleType):
            try:
                obj = importlib.import_module(f"{path}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{path}.{name}":
                    raise  # the module exists but something it imports does not
                raise LookupError(f"{path} has no {name}") from None
        else:
            raise LookupError(f"{path} has no {name}")
        path = f"{path}.{name}"
    return obj


_applied: dict[str, tuple[Any, Any]] = {}  # target -> (original, replacement)
_ABSENT = object()  # the original of an attribute the replica adds


def _check(p: Patch, original: Any) -> str | None:
    where, name = p.target.rsplit(".", 1)
    if p.adds:
        return f"{where} has {name} now: the replica adds its own (does moto implement it now?)" \
            if original is not _ABSENT else None
    if original is _ABSENT:
        return f"{where} has no {name}"
    if p.wraps and not callable(original):
        return "not callable, and the replacement calls it"
    return None


def _moto_version() -> str:
    try:
        from importlib.metadata import version

        return version("moto")
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def apply(groups: tuple[Group, ...] = GROUPS) -> None:
    """Apply every patch, or none: raises PatchTargetMissing naming each target that is missing."""
    found: dict[str, tuple[Any, Any, bool]] = {}  # target -> (owner, original, applied already)
    problems = []
    for p in registered(groups):
        try:
            owner = owner_of(p.target)
        except LookupError as exc:
            problems.append(f"  {p.target} ({exc}; README row \"{p.row}\")")
            continue
        current = getattr(owner, p.attribute, _ABSENT)
        original, replacement = _applied.get(p.target, (current, None))
        ours = current is replacement
        if not ours:
            original = current
        problem = _check(p, original)
        if problem:
            problems.append(f"  {p.target} ({problem}; README row \"{p.row}\")")
        found[p.target] = (owner, original, ours)
    if problems:
        raise PatchTargetMissing(
            f"moto {_moto_version()} does not match what the replica patches (an upgrade moved or renamed it?):\n"
            + "\n".join(problems)
            + "\nfind where it went, then update local/batchless_local/patches.py and local/README.md")
    for g in groups:
        if all(found[p.target][2] for p in g.patches):
            continue
        originals = {p.attribute: found[p.target][1] for p in g.patches}
        new = g.replacements({a: None if o is _ABSENT else o for a, o in originals.items()})
        if set(new) != {p.attribute for p in g.patches}:
            raise RuntimeError(f"{g.replacements.__qualname__} returned {sorted(new)}, "
                               f"registered {[p.attribute for p in g.patches]}")
        for p in g.patches:
            setattr(found[p.target][0], p.attribute, new[p.attribute])  # the one assignment onto moto
            _applied[p.target] = (originals[p.attribute], new[p.attribute])
