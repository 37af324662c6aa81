"""Runs launched the way the UI and the daemon launch them, and followed as they go.

`code_location(instance)` loads the code location of `workspace.yaml` (a code server subprocess,
as `dagster dev` starts one) and yields a `Launcher`. `Launcher.launch(job, tags, run_config)`
creates the run from the code location's job snapshot and execution plan, with the location's
origin (so the UI lists it under that location's job: Overview, Jobs, Runs, re-execution from the
same location), and hands it to the instance's run launcher (a run worker process started by the
code server, as the daemon does after dequeuing a run). `follow(instance, run_id, ...)` reads the
run's event log as it grows and turns it into a few lines of progress: steps starting and ending,
the assets' own log lines, check results, and the failure's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import DagsterEventType
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster.version import __version__ as dagster_version

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / "workspace.yaml"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class LaunchError(Exception):
    """The code location did not load, or a job is not in it."""


@dataclass
class Launcher:
    instance: dg.DagsterInstance
    process_context: WorkspaceProcessContext
    location_name: str

    def remote_job(self, job_name: str) -> tuple[RemoteJob, str]:
        request = self.process_context.create_request_context()
        location = request.get_code_location(self.location_name)
        repositories = list(location.get_repositories().values())
        for repo in repositories:
            if repo.has_job(job_name):
                selector = JobSubsetSelector(
                    location_name=location.name,
                    repository_name=repo.name,
                    job_name=job_name,
                    op_selection=None,
                )
                return location.get_job(selector), repo.name
        raise LaunchError(f"job {job_name} is not in code location {self.location_name}")

    def launch(
        self, job_name: str, tags: Mapping[str, str] | None = None, run_config: Mapping | None = None
    ) -> str:
        """Create a run of `job_name` with the code location's origin and launch it; its id."""
        request = self.process_context.create_request_context()
        location = request.get_code_location(self.location_name)
        remote_job, _ = self.remote_job(job_name)
        run_config = dict(run_config or {})
        plan = location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        snapshot = plan.execution_plan_snapshot
        repo = next(r for r in location.get_repositories().values() if r.has_job(job_name))
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **(tags or {})},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repo.asset_graph,
        )
        self.instance.launch_run(run.run_id, request)
        return run.run_id


@contextmanager
def code_location(
    instance: dg.DagsterInstance, workspace: Path = WORKSPACE, log_level: str = "WARNING"
) -> Iterator[Launcher]:
    """The (single) code location of `workspace`, loaded in a code server subprocess."""
    target = WorkspaceFileTarget(paths=[str(workspace)])
    with WorkspaceProcessContext(
        instance, target, version=dagster_version, code_server_log_level=log_level
    ) as process_context:
        request = process_context.create_request_context()
        errors = list(request.code_location_errors())
        if errors:
            message = errors[0].message.strip().splitlines()
            cause = errors[0]
            while cause.cause is not None:
                cause = cause.cause
            raise LaunchError(
                f"the code location of {workspace.name} did not load: "
                f"{cause.cls_name}: {cause.message.strip() or message[-1]}"
            )
        names = list(request.code_location_names)
        if len(names) != 1:
            raise LaunchError(f"{workspace} defines {len(names)} code locations; expected one")
        yield Launcher(instance, process_context, names[0])


# --- following a run ---------------------------------------------------------------------------


def failure_reason(event: dg.DagsterEvent) -> str:
    """The reason of a step failure, as one line: a `dg.Failure`'s description (the assets put the
    ForecastError's message there), else the innermost exception's type and message."""
    data = event.step_failure_data
    if data is None:
        return event.message or "failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description.strip()
    error = data.error
    if error is None:
        return event.message or "failed"
    while error.cause is not None:
        error = error.cause
    return f"{error.cls_name}: {error.message.strip()}"


@dataclass
class RunProgress:
    """What `follow` saw of one run."""

    run_id: str
    status: dg.DagsterRunStatus | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (step, reason)
    checks: list[tuple[str, str]] = field(default_factory=list)  # (check, outcome)
    materializations: dict[str, int] = field(default_factory=dict)  # asset -> events
    cursor: str | None = None
    step_started: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)  # step -> when it started
    last_line: float = field(default_factory=time.monotonic)
    last_epoch_line: dict[str, float] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        return self.failures[0][1] if self.failures else None


def _check_outcome(event: dg.DagsterEvent) -> tuple[str, str]:
    evaluation = event.asset_check_evaluation_data
    name = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
    if evaluation.passed:
        return name, "passed"
    severity = evaluation.severity.value.lower() if evaluation.severity else "error"
    return name, "warning" if severity == "warn" else "FAILED"


def poll(
    instance: dg.DagsterInstance,
    progress: RunProgress,
    say: Callable[[str], None],
    *,
    label: str,
    heartbeat_s: float = 20.0,
    epoch_every_s: float = 10.0,
) -> bool:
    """Read the run's new events, print what matters; True once the run has finished."""
    connection = instance.get_records_for_run(progress.run_id, cursor=progress.cursor)
    progress.cursor = connection.cursor
    now = time.monotonic()

    def line(text: str) -> None:
        say(f"  [{label}] {text}")
        progress.last_line = now

    for record in connection.records:
        entry = record.event_log_entry
        event = entry.dagster_event
        step = entry.step_key or ""
        if event is None:  # a log line of the assets' own code
            if entry.level < 20 or not entry.user_message:
                continue
            message = entry.user_message.strip()
            if " epoch " in message:
                if now - progress.last_epoch_line.get(step, 0.0) < epoch_every_s:
                    continue
                progress.last_epoch_line[step] = now
            line(f"{_short(step)}: {message}" if step else message)
            continue
        kind = event.event_type
        if kind == DagsterEventType.STEP_START:
            progress.step_started[step] = now
            progress.running[step] = now
            line(f"{_short(step)}: started")
        elif kind == DagsterEventType.STEP_SUCCESS:
            took = now - progress.running.pop(step, now)
            line(f"{_short(step)}: done ({took:.0f}s)")
        elif kind == DagsterEventType.STEP_FAILURE:
            progress.running.pop(step, None)
            reason = failure_reason(event)
            progress.failures.append((step, reason))
            line(f"{_short(step)}: FAILED: {reason}")
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            asset = event.asset_key.to_user_string() if event.asset_key else step
            progress.materializations[asset] = progress.materializations.get(asset, 0) + 1
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            name, outcome = _check_outcome(event)
            progress.checks.append((name, outcome))
            line(f"check {name}: {outcome}")
        elif kind == DagsterEventType.STEP_UP_FOR_RETRY:
            line(f"{_short(step)}: retrying ({event.message})")
    run = instance.get_run_by_id(progress.run_id)
    progress.status = run.status if run else None
    if progress.status in FINISHED:
        return True
    if now - progress.last_line >= heartbeat_s:
        running = [f"{_short(s)} ({now - t:.0f}s)" for s, t in progress.running.items()]
        line("... still running: " + (", ".join(running) if running else "the run worker is starting"))
    return False


def _short(step_key: str) -> str:
    """`fold_evaluation.evaluate_one_fold[fold_2]` -> `evaluate_one_fold[fold_2]`."""
    return step_key.split(".")[-1]
