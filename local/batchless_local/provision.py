"""Create what the plan lists, in moto, through its real APIs (boto3 against the replica)."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import string
import subprocess
import zipfile
from typing import Any

from .context import CTX
from . import LOCAL_DIR, REPO_ROOT, cfn, cloudtrail

VALID_COMPUTE = {"BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_2XLARGE"}
VALID_ENV_TYPES = {"WINDOWS_CONTAINER", "LINUX_CONTAINER", "LINUX_GPU_CONTAINER", "ARM_CONTAINER"}
_NO_CAMEL_BELOW = {"Options", "DockerLabels", "SystemControls"}


def camel(obj: Any, key: str | None = None) -> Any:
    if key in _NO_CAMEL_BELOW:
        return obj
    if isinstance(obj, dict):
        return {(k[0].lower() + k[1:] if k and k[0].isupper() else k): camel(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [camel(v, key) for v in obj]
    return obj


def _dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bootstrap", "#!/bin/sh\necho 'runs through cargo lambda watch locally'\n")
    return buf.getvalue()


def make_app_repo(state_dir: str, app_dir: str | None = None) -> dict[str, str]:
    """The app's git repository every CodeBuild source and ECS image maps to (branch `main`).

    Default: the sample Rails app (`local/sample-app`) plus the batchless console hook its
    initializer requires (`infra/bastion/console_hook.rb`, copied from this repository).
    `app_dir` (`up --app DIR`): the user's app; a git repository is cloned (its HEAD becomes
    `main`; uncommitted changes are not included), a plain directory is copied and committed.
    """
    src = os.path.abspath(app_dir) if app_dir else os.path.join(LOCAL_DIR, "sample-app")
    dest = os.path.join(state_dir, "app.git")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str, cwd: str = dest) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()

    if not os.path.isdir(src):
        raise FileNotFoundError(f"the app directory {src} does not exist")
    is_repo = app_dir is not None and subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=src, capture_output=True).returncode == 0
    if is_repo:
        git("clone", "--quiet", src, dest, cwd=state_dir)
        git("checkout", "--quiet", "-B", "main")
    else:
        shutil.copytree(src, dest, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "log", "tmp", ".bundle", "node_modules"))
        if app_dir is None:
            hook = os.path.join(REPO_ROOT, "infra", "bastion", "console_hook.rb")
            os.makedirs(os.path.join(dest, "infra", "bastion"), exist_ok=True)
            shutil.copy2(hook, os.path.join(dest, "infra", "bastion", "console_hook.rb"))
        git("init", "--quiet", "--initial-branch=main")
    git("config", "user.name", "Replica App")
    git("config", "user.email", "app@replica.invalid")
    git("config", "commit.gpgsign", "false")
    if not is_repo:
        git("add", "-A")
        git("commit", "--quiet", "-m", "initial commit of the " + ("app" if app_dir else "sample app"))
    return {"path": dest, "head": git("rev-parse", "HEAD"), "source": src}


def _generate_secret(spec: dict[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&*+-=?^_~"
    exclude = spec.get("ExcludeCharacters", "")
    alphabet = "".join(c for c in alphabet if c not in exclude)
    if spec.get("ExcludeNumbers"):
        alphabet = "".join(c for c in alphabet if not c.isdigit())
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    if spec.get("SecretStringTemplate") and spec.get("GenerateStringKey"):
        doc = json.loads(spec["SecretStringTemplate"])
        doc[spec["GenerateStringKey"]] = value
        return json.dumps(doc)
    return value


class Provisioner:
    def __init__(self, stack_name: str, lambda_env: dict[str, str]):
        self.stack = stack_name
        self.lambda_env = lambda_env
        self.resources: dict[str, dict[str, Any]] = {}
        self.functions: dict[str, dict[str, Any]] = {}
        self.state_machines: dict[str, str] = {}
        self.tables: dict[str, str] = {}
        self.buckets: dict[str, str] = {}
        self.secret_values: dict[str, str] = {}  # logical id -> value
        self.roles_created: set[str] = set()
        self.zip = _dummy_zip()

    def c(self, svc: str) -> Any:
        """The client CloudFormation would be: its calls are recorded as made for a stack
        (`cloudtrail.CLOUDFORMATION_ACCESS_KEY`), so the sweep treats them as a deploy's."""
        return CTX.client(svc, access_key=cloudtrail.CLOUDFORMATION_ACCESS_KEY)

    def role_arn(self, name: str) -> str:
        if name not in self.roles_created:
            try:
                self.c("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
                    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                            "Principal": {"Service": "lambda.amazonaws.com"}}]}))
            except self.c("iam").exceptions.EntityAlreadyExistsException:
                pass
            self.roles_created.add(name)
        return f"arn:aws:iam::{CTX.account}:role/{name}"

    def default_role(self, lid: str) -> str:
        return self.role_arn(f"{self.stack}-{lid}Role"[:64])

    def __call__(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        if entry.get("action") != "create":
            return None
        t = entry["type"].replace("::", "_").replace("AWS_", "", 1)
        fn = getattr(self, f"create_{t}", None)
        if fn is None:
            return None
        print(f"provisioning {entry['logical_id']} ({entry['type']}) as {entry['physical_name']}", flush=True)
        attrs = fn(entry, entry["properties"], entry["physical_name"]) or {}
        lid = entry["logical_id"]
        merged = {**entry["attrs"], **attrs}
        self.resources[lid] = {"type": entry["type"], "physical_id": str(merged.get("Ref")),
                               "arn": merged.get("Arn") or merged.get("TaskDefinitionArn")}
        return attrs

    # ------------------------------------------------------------------ functions
    def create_Serverless_Function(self, e: dict, p: dict, name: str) -> dict:
        lid = e["logical_id"]
        role = p.get("Role") or self.default_role(lid)
        variables = {**e.get("environment", {}), **self.stack_vars()}
        resp = self.c("lambda").create_function(
            FunctionName=name, Runtime=p.get("Runtime") or "provided.al2023", Role=role,
            Handler=p.get("Handler") or "bootstrap", Code={"ZipFile": self.zip},
            Timeout=int(p.get("Timeout") or 3), MemorySize=int(p.get("MemorySize") or 128),
            Architectures=p.get("Architectures") or ["x86_64"],
            Environment={"Variables": variables}, Description=p.get("Description") or "")
        arn = resp["FunctionArn"]
        CTX.functions_by_name[name] = {"logical_id": lid, "binary": e["binary"]}
        self.functions[lid] = {"name": name, "binary": e["binary"], "arn": arn}
        if e.get("function_url"):
            CTX.function_urls[lid] = name
            CTX.function_url_auth[lid] = e.get("function_url_auth", "NONE")
        for ev_name, ev in (e.get("events") or {}).items():
            self._sam_event(lid, ev_name, ev, arn)
        return {"Arn": arn}

    create_Lambda_Function = create_Serverless_Function

    def stack_vars(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": CTX.endpoint, "AWS_REGION": CTX.region, "AWS_DEFAULT_REGION": CTX.region,
                "BATCHLESS_REPLICA": "1"}

    def _sam_event(self, lid: str, ev_name: str, ev: dict, target_arn: str, role: str | None = None) -> None:
        etype = ev.get("Type")
        props = ev.get("Properties") or {}
        rule_name = (props.get("RuleName") or props.get("Name") or f"{self.stack}-{lid}-{ev_name}")[:64]
        target: dict[str, Any] = {"Id": (props.get("Target") or {}).get("Id") or f"{lid}{ev_name}"[:64],
                                  "Arn": target_arn}
        for k in ("Input", "InputPath", "InputTransformer"):
            if props.get(k) is not None:
                target[k] = props[k]
        if etype in ("EventBridgeRule", "CloudWatchEvent"):
            enabled = props.get("State", "ENABLED" if props.get("Enabled", True) else "DISABLED")
            self.c("events").put_rule(Name=rule_name, EventPattern=json.dumps(props.get("Pattern") or {}),
                                      State=enabled, EventBusName=props.get("EventBusName") or "default")
            self.c("events").put_targets(Rule=rule_name, EventBusName=props.get("EventBusName") or "default",
                                         Targets=[target])
        elif etype == "Schedule":
            enabled = props.get("State", "ENABLED" if props.get("Enabled", True) else "DISABLED")
            self.c("events").put_rule(Name=rule_name, ScheduleExpression=props["Schedule"], State=enabled)
            self.c("events").put_targets(Rule=rule_name, Targets=[target])
        elif etype == "ScheduleV2":
            t = {"Arn": target_arn, "RoleArn": props.get("RoleArn") or role or self.default_role(lid)}
            if props.get("Input") is not None:
                t["Input"] = props["Input"]
            kwargs: dict[str, Any] = {"Name": props.get("Name") or rule_name, "ScheduleExpression": props["ScheduleExpression"],
                                      "FlexibleTimeWindow": props.get("FlexibleTimeWindow") or {"Mode": "OFF"},
                                      "Target": t, "State": props.get("State") or "ENABLED"}
            if props.get("ScheduleExpressionTimezone"):
                kwargs["ScheduleExpressionTimezone"] = props["ScheduleExpressionTimezone"]
            self.c("scheduler").create_schedule(**kwargs)

    # ------------------------------------------------------------------ state machines
    def create_Serverless_StateMachine(self, e: dict, p: dict, name: str) -> dict:
        lid = e["logical_id"]
        role = p.get("Role") or p.get("RoleArn") or self.default_role(lid)
        kwargs: dict[str, Any] = {"name": name, "definition": e["definition"], "roleArn": role}
        if p.get("Type") or p.get("StateMachineType"):
            kwargs["type"] = p.get("Type") or p.get("StateMachineType")
        arn = self.c("stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
        self.state_machines[lid] = arn
        for ev_name, ev in (p.get("Events") or {}).items():
            self._sam_event(lid, ev_name, ev, arn, role)
        return {"Ref": arn, "Arn": arn}

    create_StepFunctions_StateMachine = create_Serverless_StateMachine

    # ------------------------------------------------------------------ data
    def create_DynamoDB_Table(self, e: dict, p: dict, name: str) -> dict:
        kwargs: dict[str, Any] = {"TableName": name, "AttributeDefinitions": p["AttributeDefinitions"],
                                  "KeySchema": p["KeySchema"]}
        billing = p.get("BillingMode") or ("PROVISIONED" if p.get("ProvisionedThroughput") else "PAY_PER_REQUEST")
        kwargs["BillingMode"] = billing
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = {k: int(v) for k, v in (p.get("ProvisionedThroughput") or
                                               {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}).items()}
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if p.get(key):
                idxs = []
                for idx in p[key]:
                    idx = dict(idx)
                    if billing != "PROVISIONED":
                        idx.pop("ProvisionedThroughput", None)
                    idx.pop("ContributorInsightsSpecification", None)
                    idxs.append(idx)
                kwargs[key] = idxs
        if p.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **p["StreamSpecification"]}
        desc = self.c("dynamodb").create_table(**kwargs)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            self.c("dynamodb").update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
        self.tables[e["logical_id"]] = name
        out = {"Arn": desc["TableArn"]}
        if desc.get("LatestStreamArn"):
            out["StreamArn"] = desc["LatestStreamArn"]
        return out

    def create_S3_Bucket(self, e: dict, p: dict, name: str) -> dict:
        lock = str(p.get("ObjectLockEnabled")).lower() == "true"
        self.c("s3").create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if lock else {}))
        rule = (p.get("ObjectLockConfiguration") or {}).get("Rule")
        if lock and rule:
            rule = {"DefaultRetention": {k: (int(v) if k in ("Days", "Years") else v)
                                         for k, v in (rule.get("DefaultRetention") or {}).items()}}
            self.c("s3").put_object_lock_configuration(
                Bucket=name, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule})
        if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            self.c("s3").put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self.buckets[e["logical_id"]] = name
        return {}

    def create_KMS_Key(self, e: dict, p: dict, name: str) -> dict:
        """A real moto key with the template's KeySpec and KeyUsage (moto's own CloudFormation
        support makes every key symmetric), so asymmetric Sign/Verify work."""
        args: dict[str, Any] = {"KeySpec": p.get("KeySpec") or "SYMMETRIC_DEFAULT",
                                "KeyUsage": p.get("KeyUsage") or "ENCRYPT_DECRYPT",
                                "Description": p.get("Description") or ""}
        if p.get("KeyPolicy") is not None:
            pol = p["KeyPolicy"]
            args["Policy"] = pol if isinstance(pol, str) else json.dumps(pol)
        meta = self.c("kms").create_key(**args)["KeyMetadata"]
        return {"Ref": meta["KeyId"], "KeyId": meta["KeyId"], "Arn": meta["Arn"]}

    def create_KMS_Alias(self, e: dict, p: dict, name: str) -> dict:
        self.c("kms").create_alias(AliasName=name, TargetKeyId=p["TargetKeyId"])
        return {"Ref": name}

    def create_SecretsManager_Secret(self, e: dict, p: dict, name: str) -> dict:
        value = p.get("SecretString")
        if value is None:
            value = _generate_secret(p.get("GenerateSecretString") or {})
        if not isinstance(value, str):
            value = json.dumps(value)
        kwargs: dict[str, Any] = {"Name": name, "SecretString": value}
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        arn = self.c("secretsmanager").create_secret(**kwargs)["ARN"]
        self.secret_values[e["logical_id"]] = value
        return {"Ref": arn, "Arn": arn, "Id": arn}

    def create_SSM_Parameter(self, e: dict, p: dict, name: str) -> dict:
        kwargs: dict[str, Any] = {"Name": name, "Value": str(p["Value"]), "Type": p.get("Type") or "String",
                                  "Overwrite": True}
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        self.c("ssm").put_parameter(**kwargs)
        return {"Value": str(p["Value"])}

    def create_Logs_LogGroup(self, e: dict, p: dict, name: str) -> dict:
        self.c("logs").create_log_group(logGroupName=name)
        if p.get("RetentionInDays"):
            self.c("logs").put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        return {}

    def create_Logs_SubscriptionFilter(self, e: dict, p: dict, name: str) -> dict:
        # Delivered asynchronously, filter pattern applied: see logs.py.
        self.c("logs").put_subscription_filter(
            logGroupName=p["LogGroupName"], filterName=name, filterPattern=p.get("FilterPattern") or "",
            destinationArn=p["DestinationArn"])
        return {}

    def create_SNS_Topic(self, e: dict, p: dict, name: str) -> dict:
        attrs = {"FifoTopic": "true"} if p.get("FifoTopic") else {}
        arn = self.c("sns").create_topic(Name=name, Attributes=attrs)["TopicArn"]
        return {"Ref": arn, "Arn": arn, "TopicArn": arn}

    def create_SQS_Queue(self, e: dict, p: dict, name: str) -> dict:
        attrs = {}
        for k in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "FifoQueue", "ContentBasedDeduplication"):
            if p.get(k) is not None:
                attrs[k] = str(p[k]).lower() if isinstance(p[k], bool) else str(p[k])
        url = self.c("sqs").create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arn = self.c("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "QueueUrl": url, "Arn": arn}

    def create_IAM_Role(self, e: dict, p: dict, name: str) -> dict:
        doc = p.get("AssumeRolePolicyDocument") or {}
        kwargs: dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": doc if isinstance(doc, str) else json.dumps(doc)}
        if p.get("Path"):
            kwargs["Path"] = p["Path"]
        arn = self.c("iam").create_role(**kwargs)["Role"]["Arn"]
        self.roles_created.add(name)
        return {"Arn": arn}

    # ------------------------------------------------------------------ events / schedules
    def create_Events_Rule(self, e: dict, p: dict, name: str) -> dict:
        kwargs: dict[str, Any] = {"Name": name, "State": p.get("State") or "ENABLED"}
        if p.get("EventPattern") is not None:
            pat = p["EventPattern"]
            kwargs["EventPattern"] = pat if isinstance(pat, str) else json.dumps(pat)
        if p.get("ScheduleExpression"):
            kwargs["ScheduleExpression"] = p["ScheduleExpression"]
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        bus = p.get("EventBusName") or "default"
        kwargs["EventBusName"] = bus
        arn = self.c("events").put_rule(**kwargs)["RuleArn"]
        targets = []
        for t in p.get("Targets") or []:
            tt = {k: v for k, v in t.items() if k in ("Id", "Arn", "Input", "InputPath", "InputTransformer",
                                                       "RoleArn", "RetryPolicy", "DeadLetterConfig", "SqsParameters")}
            targets.append(tt)
        if targets:
            self.c("events").put_targets(Rule=name, EventBusName=bus, Targets=targets)
        return {"Arn": arn}

    def create_Scheduler_Schedule(self, e: dict, p: dict, name: str) -> dict:
        target = {k: v for k, v in (p.get("Target") or {}).items()
                  if k in ("Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig")}
        if not target.get("RoleArn"):
            target["RoleArn"] = self.role_arn(f"{self.stack}-scheduler-role")
        kwargs: dict[str, Any] = {"Name": name, "ScheduleExpression": p["ScheduleExpression"],
                                  "FlexibleTimeWindow": p.get("FlexibleTimeWindow") or {"Mode": "OFF"},
                                  "Target": target, "State": p.get("State") or "ENABLED"}
        for k in ("ScheduleExpressionTimezone", "Description", "GroupName"):
            if p.get(k):
                kwargs[k] = p[k]
        arn = self.c("scheduler").create_schedule(**kwargs)["ScheduleArn"]
        return {"Arn": arn}

    # ------------------------------------------------------------------ builds / tasks
    def create_CodeBuild_Project(self, e: dict, p: dict, name: str) -> dict:
        src = p.get("Source") or {}
        source: dict[str, Any] = {"type": src.get("Type") or "NO_SOURCE", "location": CTX.app_repo,
                                  "gitCloneDepth": int(src.get("GitCloneDepth") or 0)}
        if src.get("BuildSpec"):
            source["buildspec"] = src["BuildSpec"]
        if src.get("Location"):
            source["sourceIdentifier"] = None
        source = {k: v for k, v in source.items() if v is not None}
        art = p.get("Artifacts") or {"Type": "NO_ARTIFACTS"}
        artifacts = {"type": art.get("Type") or "NO_ARTIFACTS"}
        if artifacts["type"] != "NO_ARTIFACTS":
            artifacts["location"] = art.get("Location") or "replica-artifacts"
        if artifacts["type"] == "S3":  # what UPLOAD_ARTIFACTS needs (codebuild.py)
            for k in ("Path", "Name", "NamespaceType", "Packaging", "EncryptionDisabled", "OverrideArtifactName"):
                if art.get(k) is not None:
                    artifacts[k[0].lower() + k[1:]] = art[k]
        env = p.get("Environment") or {}
        environment = {
            "type": env.get("Type") if env.get("Type") in VALID_ENV_TYPES else "LINUX_CONTAINER",
            "image": env.get("Image") or "aws/codebuild/standard:7.0",
            "computeType": env.get("ComputeType") if env.get("ComputeType") in VALID_COMPUTE else "BUILD_GENERAL1_SMALL",
            "privilegedMode": bool(env.get("PrivilegedMode", False)),
            "environmentVariables": [{"name": v["Name"], "value": str(v.get("Value", "")),
                                      "type": v.get("Type") or "PLAINTEXT"}
                                     for v in env.get("EnvironmentVariables") or []],
        }
        role = p.get("ServiceRole") or self.role_arn(f"{self.stack}-codebuild-role")
        if not str(role).startswith("arn:"):
            role = f"arn:aws:iam::{CTX.account}:role/{role}"
        kwargs: dict[str, Any] = {"name": name, "source": source, "artifacts": artifacts,
                                  "environment": environment, "serviceRole": role,
                                  "timeoutInMinutes": int(p.get("TimeoutInMinutes") or 60)}
        if p.get("QueuedTimeoutInMinutes"):
            kwargs["queuedTimeoutInMinutes"] = int(p["QueuedTimeoutInMinutes"])
        if p.get("SourceVersion"):
            kwargs["sourceVersion"] = p["SourceVersion"]
        if p.get("Description"):
            kwargs["description"] = p["Description"]
        logs = ((p.get("LogsConfig") or {}).get("CloudWatchLogs")) or {}
        if logs:
            kwargs["logsConfig"] = {"cloudWatchLogs": {k: v for k, v in {
                "status": logs.get("Status") or "ENABLED", "groupName": logs.get("GroupName"),
                "streamName": logs.get("StreamName")}.items() if v}}
        arn = self.c("codebuild").create_project(**kwargs)["project"]["arn"]
        return {"Arn": arn}

    def create_ECS_Cluster(self, e: dict, p: dict, name: str) -> dict:
        arn = self.c("ecs").create_cluster(clusterName=name)["cluster"]["clusterArn"]
        return {"Arn": arn}

    def create_ECS_TaskDefinition(self, e: dict, p: dict, name: str) -> dict:
        containers = camel(p.get("ContainerDefinitions") or [])
        for c in containers:
            for k in ("cpu", "memory", "memoryReservation"):
                if k in c:
                    c[k] = int(c[k])
            for pm in c.get("portMappings") or []:
                for k in ("containerPort", "hostPort"):
                    if k in pm:
                        pm[k] = int(pm[k])
        kwargs: dict[str, Any] = {"family": name, "containerDefinitions": containers}
        for src, dst in (("NetworkMode", "networkMode"), ("RequiresCompatibilities", "requiresCompatibilities"),
                         ("Cpu", "cpu"), ("Memory", "memory"), ("ExecutionRoleArn", "executionRoleArn"),
                         ("TaskRoleArn", "taskRoleArn")):
            if p.get(src) is not None:
                kwargs[dst] = str(p[src]) if dst in ("cpu", "memory") else p[src]
        arn = self.c("ecs").register_task_definition(**kwargs)["taskDefinition"]["taskDefinitionArn"]
        return {"Ref": arn, "Arn": arn, "TaskDefinitionArn": arn}


def find_signing_secret(plan: dict[str, Any], prov: Provisioner) -> str | None:
    for r in plan["resources"]:
        lid = r["logical_id"]
        if r.get("action") == "create" and r["type"] == "AWS::SecretsManager::Secret" \
                and "signing" in (lid + r.get("physical_name", "")).lower():
            val = prov.secret_values.get(lid)
            if val is None:
                continue
            try:
                doc = json.loads(val)
                if isinstance(doc, dict):
                    for k in ("signing_secret", "SLACK_SIGNING_SECRET", "secret", "value"):
                        if k in doc:
                            return str(doc[k])
                    if len(doc) == 1:
                        return str(next(iter(doc.values())))
            except ValueError:
                pass
            return val
    for k, v in plan["parameters"].items():
        if "signingsecret" in k.lower().replace("_", ""):
            return str(v)
    return None


_ = cfn
