"""Step Functions: execution status change events, and the time-scale knob."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

from .context import CTX, epoch_ms
from . import events


def _status_detail(execution: Any) -> dict[str, Any]:
    status = execution.exec_status.value if execution.exec_status is not None else "RUNNING"
    sm_arn = execution.state_machine.arn
    # the parser keeps a per-execution clone; its arn is the state machine's
    detail: dict[str, Any] = {
        "executionArn": execution.exec_arn, "stateMachineArn": sm_arn, "name": execution.name,
        "status": status, "startDate": epoch_ms(execution.start_date),
        "stopDate": epoch_ms(execution.stop_date) if status != "RUNNING" else None,
        "input": json.dumps(execution.input_data, separators=(",", ":")),
        "output": None, "inputDetails": {"included": True}, "outputDetails": None,
        "error": execution.error, "cause": execution.cause,
    }
    if status == "SUCCEEDED":
        detail["output"] = json.dumps(execution.output, separators=(",", ":"))
        detail["outputDetails"] = {"included": True}
    return detail


def _emit(execution: Any) -> None:
    events.emit("aws.states", "Step Functions Execution Status Change", _status_detail(execution),
                [execution.exec_arn])


def stepfunctions_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """Execution status change events, UUID names for unnamed executions (registered in patches.py)."""
    from moto.stepfunctions.parser.api import ExecutionStatus

    orig_start = original["start_execution"]

    def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):  # type: ignore[no-untyped-def]
        if not name:  # moto's parser backend would build the ARN with "None" as the name
            import uuid

            name = str(uuid.uuid4())
        sm = self.describe_state_machine(state_machine_arn)
        before = {id(e) for e in sm.executions}
        execution = orig_start(self, state_machine_arn, name, execution_input, trace_header)
        if id(execution) not in before:
            _emit_running(execution)
        return execution

    _final_lock = threading.Lock()

    def _emit_running(execution: Any) -> None:
        """RUNNING, once, and always before the final status: an execution that fails at once
        can finish on its worker thread before StartExecution returns."""
        with _final_lock:
            if getattr(execution, "_replica_running", False):
                return
            execution._replica_running = True
            d = _status_detail(execution)
            d.update(status="RUNNING", stopDate=None, output=None, outputDetails=None, error=None, cause=None)
            events.emit("aws.states", "Step Functions Execution Status Change", d, [execution.exec_arn])

    def _final(execution: Any) -> None:
        _emit_running(execution)
        with _final_lock:
            if getattr(execution, "_replica_final", False):
                return
            execution._replica_final = True
        _emit(execution)

    orig_terminated = original["terminated"]

    def terminated(self):  # type: ignore[no-untyped-def]
        if getattr(self.execution, "_replica_final", False):
            return  # already reported ABORTED by StopExecution
        orig_terminated(self)
        _final(self.execution)

    orig_stop = original["stop"]

    def stop(self, stop_date, error, cause):  # type: ignore[no-untyped-def]
        orig_stop(self, stop_date, error, cause)
        if self.exec_status == ExecutionStatus.RUNNING:
            # AWS reports ABORTED as soon as StopExecution returns (the worker thread may still be
            # blocked in a long wait); report it now.
            self.exec_status = ExecutionStatus.ABORTED
            self.stop_date = stop_date or datetime.datetime.now(tz=datetime.timezone.utc)
            if error:
                self.error = error
            if cause:
                self.cause = cause
            _final(self)

    return {"start_execution": start_execution, "terminated": terminated, "stop": stop}


def time_scale_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """Divide Wait durations, Retry intervals, TimeoutSeconds / HeartbeatSeconds by the time scale
    (registered in patches.py)."""
    from moto.stepfunctions.parser.asl.component.common.timeouts import timeout as tmod
    from moto.stepfunctions.parser.asl.component.program import program as prog

    class _ScaledTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(CTX.scaled(seconds))

    def _wait_interval(self, env, wait_seconds):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + CTX.scaled(max(0.0, float(wait_seconds)))
        while env.is_running():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            env.program_state_event.wait(min(left, 1.0))

    def timeout_eval_body(self, env):  # type: ignore[no-untyped-def]
        seconds = self._eval_seconds(env=env)
        if seconds == tmod.TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS:
            env.stack.append(seconds)
        else:
            env.stack.append(CTX.scaled(seconds))

    orig_hb_init = original["__init__"]

    def hb_init(self, heartbeat_seconds):  # type: ignore[no-untyped-def]
        orig_hb_init(self, CTX.scaled(heartbeat_seconds))

    import threading as _th

    def program_eval(self, env):  # type: ignore[no-untyped-def]
        timeout = self.timeout_seconds.timeout_seconds if self.timeout_seconds else None
        if timeout is not None:
            timeout = CTX.scaled(timeout)
        env.next_state_name = self.start_at.start_at_name
        worker = _th.Thread(target=super(prog.Program, self).eval, args=(env,), daemon=True)
        prog.TMP_THREADS.append(worker)
        worker.start()
        worker.join(timeout=timeout)
        if worker.is_alive():
            env.set_timed_out()

    return {"time": _ScaledTime(), "_wait_interval": _wait_interval, "_eval_body": timeout_eval_body,
            "__init__": hb_init, "eval": program_eval}


def dynamodb_lock_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """Serialize the DynamoDB backend's writes: conditional writes are atomic by construction
    (registered in patches.py)."""
    lock = threading.RLock()

    def make(orig):  # type: ignore[no-untyped-def]
        def locked(self, *a, **kw):  # type: ignore[no-untyped-def]
            with lock:
                return orig(self, *a, **kw)
        return locked

    return {name: make(orig) for name, orig in original.items()}
