"""The Dagster instance's local storage, as `dagster.yaml` configures it.

Two things the stock SQLite classes do not do, and this module adds:

- **Paths relative to $DAGSTER_HOME.** A relative `base_dir` in `dagster.yaml` resolves against
  the directory holding `dagster.yaml` ($DAGSTER_HOME), not the current directory, so the UI, the
  daemon, the demo and every run worker find the same runs wherever they were started.
- **One transaction per batch of asset events.** A single-run backfill of N session partitions
  ends with N materialization events (one per partition: that is what makes each partition
  "materialized" in the UI, with its own metadata). The stock SQLite event log writes them one by
  one, two commits each (run shard and index shard, ~14 ms together on this machine), so a
  full-history ingest of 8,313 sessions spent about two minutes writing them. With
  `DAGSTER_EVENT_BATCH_SIZE` set, Dagster hands a range's events over in batches
  (`store_event_batch`); `BatchedSqliteEventLogStorage` writes a batch in one transaction per
  shard (what dagster-postgres does natively), with the same rows as event-by-event writes.

Importing this module (every process that loads the instance does, since `dagster.yaml` names
it) also opts into the two environment switches the batching needs, unless they are set:
`DAGSTER_EVENT_BATCH_SIZE=1000` (asset events of a range written in batches), and
`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1` (one "materialization planned" event per asset
and run, holding the partition range, instead of one per partition: Dagster PR 29288). The price
of the second, as Dagster documents it: the partitions of a range run that fails are shown as
missing, not failed (the run itself is failed, with its reason).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.root import LocalArtifactStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from dagster._utils import mkdir_p

#: Environment switches this instance runs with (an explicit setting wins).
EVENT_SWITCHES = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
}
for _name, _value in EVENT_SWITCHES.items():
    os.environ.setdefault(_name, _value)

_BATCHED = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION}


def home_relative(base_dir: str) -> str:
    """`base_dir` made absolute against $DAGSTER_HOME (the current directory if unset)."""
    path = Path(os.path.expanduser(base_dir))
    if not path.is_absolute():
        path = Path(os.environ.get("DAGSTER_HOME") or os.getcwd()) / path
    return str(path.resolve())


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that writes a batch of asset materializations (or observations) of
    one run in one transaction per shard; anything else is written event by event as before."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not events:
            return
        kinds = {e.dagster_event_type for e in events}
        runs = {e.run_id for e in events}
        if (
            len(kinds) != 1
            or not kinds <= _BATCHED
            or len(runs) != 1
            or not all(e.get_dagster_event().asset_key for e in events)
        ):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:  # one transaction, one executemany
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            inserted = conn.execute(
                SqlEventLogStorageTable.insert().returning(
                    SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                ),
                rows,
            )
            ids = [row[0] for row in inserted]
            self._store_asset_event_tags(conn, events, ids)
            # The asset's row keeps its last event (what storing them one by one leaves there).
            self._store_asset_event(conn, events[-1], ids[-1])

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchedSqliteEventLogStorage:
        return cls(home_relative(config_value["base_dir"]), inst_data=inst_data)


class ForecastSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, event logs, schedules under `base_dir`, laid out as the
    stock `storage: sqlite:` does) with `base_dir` relative to $DAGSTER_HOME and batched event
    writes. Configured in `dagster.yaml` as `storage: custom:`."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        base = home_relative(base_dir)
        mkdir_p(base)
        self.base_dir = base
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base))
        self._event_log_storage = BatchedSqliteEventLogStorage(_event_logs_directory(base))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> ForecastSqliteStorage:
        return cls(config_value["base_dir"], inst_data=inst_data)

    @classmethod
    def from_local(
        cls, base_dir: str, inst_data: ConfigurableClassData | None = None
    ) -> ForecastSqliteStorage:
        return cls(base_dir, inst_data=inst_data)


class HomeArtifactStorage(LocalArtifactStorage):
    """`LocalArtifactStorage` (step outputs) with `base_dir` relative to $DAGSTER_HOME."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> HomeArtifactStorage:
        return cls(home_relative(config_value["base_dir"]), inst_data=inst_data)


class HomeComputeLogManager(LocalComputeLogManager):
    """`LocalComputeLogManager` (captured stdout/stderr of steps) with `base_dir` relative to
    $DAGSTER_HOME."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> HomeComputeLogManager:
        values = dict(config_value)
        values["base_dir"] = home_relative(values["base_dir"])
        return cls(inst_data=inst_data, **values)
