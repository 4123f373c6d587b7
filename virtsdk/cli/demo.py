"""``virtsdk demo``: the whole stack on an embedded three-host cloud, in one process.

Boots instances on the configured driver (``fake`` by default: nothing to install),
then runs every flow through the public API with progress bars fed by the migration
records: resize + confirm, resize + revert, cold migration, a live migration of a
guest that dirties memory too fast to converge until the downtime steps raise the
allowed downtime, an abort, and an injected failure (a lost ``pre_live_migration``
message) that rolls back cleanly.  Prints a summary table and exits 0 only if every
step ended as expected.  Works without a TTY (CI).

The driver is loaded by entry-point name and tuned only through configuration and
instance metadata; the demo never imports a driver.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import oslo_messaging
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from virtsdk.cli.drivers import parse_overrides
from virtsdk.cloud import EmbeddedCloud, make_conf
from virtsdk.exceptions import BrokerUnreachable, VirtSDKError
from virtsdk.objects import Instance, Migration
from virtsdk.states import MigrationStatus, VMState

#: instance metadata the fake driver reads to model a busy guest (ignored by others)
DIRTY_GUEST = {"fake:dirty_rate_mbps": "150", "fake:working_set_mb": "40"}
HOPELESS_GUEST = {"fake:dirty_rate_mbps": "400"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run every migration flow on an embedded 3-host cloud")
    p.add_argument("--driver", default="fake", help="compute driver entry point (fake)")
    p.add_argument("--time-scale", type=float, default=0.01,
                   help="fake driver: real seconds per simulated second (default 0.01)")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.OPT=VALUE",
                   help="configuration override for the embedded cloud (repeatable)")
    p.add_argument("--state-dir", default=None,
                   help="where the database goes (default: a temporary directory)")
    p.set_defaults(func=run)


@dataclass
class Step:
    name: str
    instance: str
    ok: bool = False
    route: str = ""
    status: str = ""
    vm_state: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.console = console
        self.state_dir = args.state_dir or tempfile.mkdtemp(prefix="virtsdk-demo-")
        self.own_dir = args.state_dir is None
        overrides: dict[str, dict[str, object]] = {
            # Nova's schedule waits downtime_delay * data_gb seconds per step (75 s
            # per GiB by default); the demo steps every few simulated seconds
            "live_migration": {"bandwidth": 100, "downtime_delay": 10},
            "compute": {"report_interval": 1.0},
        }
        #: the busy-guest and abort steps need guests the fake driver can make dirty
        #: memory on demand (instance metadata); other drivers skip them, saying so
        self.fake = args.driver == "fake"
        if self.fake:
            overrides["fake"] = {"fabric": f"demo-{time.monotonic_ns()}",
                                 "time_scale": args.time_scale}
        for group, values in parse_overrides(args.set).items():
            overrides.setdefault(group, {}).update(values)
        given = getattr(args, "conf", None)  # `virtsdk --config-file ... demo`
        transport_url = None
        if given is not None:
            # the configuration's broker and database carry the demo cloud
            transport_url = given.transport_url
            overrides["DEFAULT"] = {"rpc_connect_timeout": given.rpc_connect_timeout}
            if given.database.connection:
                overrides["database"] = {"connection": given.database.connection}
        self.cloud = EmbeddedCloud(
            ("host1", "host2", "host3"), args.driver,
            conf=make_conf(self.state_dir, args.driver, overrides, transport_url),
            state_path=self.state_dir)
        self.api, self.ctx = self.cloud.api, self.cloud.ctx
        self.steps: list[Step] = []
        self.booted: list[Instance] = []

    # -- plumbing ---------------------------------------------------------------------------

    def _watch(self, progress: Progress, label: str, inst: Instance,
               migration_id: Callable[[], int | None],
               on_progress: Callable[[Migration], None] | None = None) -> Instance:
        """Drive one progress bar from the migration record until the task is over."""
        task = progress.add_task(label, total=100)
        deadline = time.monotonic() + 120
        while True:
            now = self.api.show_instance(self.ctx, inst.uuid)
            mid = migration_id()
            if mid is not None:
                mig = self.api.get_migration(self.ctx, inst.uuid, mid)
                progress.update(task, completed=mig.progress,
                                description=f"{label} [{mig.status}]")
                if on_progress is not None:
                    on_progress(mig)
            if now.task_state is None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        done = self.api.wait(self.ctx, inst.uuid)
        progress.update(task, completed=100 if mid is not None and self.api.get_migration(
            self.ctx, inst.uuid, mid).progress == 100 else progress.tasks[task].completed)
        return done

    def _latest_migration(self, inst: Instance, after: int) -> Callable[[], int | None]:
        def find() -> int | None:
            migs = [m for m in self.api.list_migrations(self.ctx, instance_uuid=inst.uuid)
                    if (m.id or 0) > after]
            return migs[-1].id if migs else None
        return find

    def _last_id(self) -> int:
        migs = self.api.list_migrations(self.ctx)
        return max((m.id or 0 for m in migs), default=0)

    def _record(self, step: Step, inst: Instance, source: str | None, started: float,
                expect_status: MigrationStatus, expect_vm: VMState,
                expect_moved: bool) -> None:
        step.seconds = time.monotonic() - started
        migs = self.api.list_migrations(self.ctx, instance_uuid=inst.uuid)
        step.status = str(migs[-1].status) if migs else "-"
        step.vm_state = str(inst.vm_state)
        step.route = f"{source} -> {inst.host}" if source != inst.host else f"{source} (stayed)"
        moved = inst.host != source
        step.ok = (step.status == str(expect_status) and inst.vm_state == expect_vm
                   and moved == expect_moved)
        self.steps.append(step)

    # -- the scenario -----------------------------------------------------------------------

    def run(self) -> bool:
        try:
            self.cloud.start()  # BrokerUnreachable if the broker does not answer
        except Exception:
            self.cloud.stop()
            if self.own_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        try:
            self._scenario()
        finally:
            self._clean_up()
            self.cloud.stop()
            if self.own_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)
        return all(s.ok for s in self.steps)

    def _clean_up(self) -> None:
        """Delete every guest the demo booted, whatever state it ended in."""
        for inst in self.booted:
            try:
                self.api.wait(self.ctx, inst.uuid, timeout=120)
                if self.api.show_instance(self.ctx, inst.uuid).vm_state == VMState.RESIZED:
                    self.api.revert_resize(self.ctx, inst.uuid)
                    self.api.wait(self.ctx, inst.uuid, timeout=120)
                self.api.delete_instance(self.ctx, inst.uuid)
                self.api.wait(self.ctx, inst.uuid, timeout=120)
            except VirtSDKError as exc:
                self.console.print(f"[red]could not delete {inst.name}:[/red] {exc}")

    def _skip(self, name: str, instance: str, why: str) -> None:
        step = Step(name, instance, ok=True, status="skipped")
        step.notes.append(why)
        self.steps.append(step)

    def _scenario(self) -> None:
        api, ctx = self.api, self.ctx
        caps = self.cloud.computes[self.cloud.hosts[0]].driver.capabilities
        for name, mem, vcpus, disk in (("small", 512, 1, 2), ("medium", 1024, 2, 4),
                                       ("large", 2048, 2, 8)):
            api.flavor_create(ctx, name, mem, vcpus, disk)
        started = time.monotonic()
        specs = {"web": ("small", None), "db": ("medium", None), "batch": ("small", None),
                 "cache": ("large", DIRTY_GUEST), "stream": ("large", HOPELESS_GUEST)}
        insts = {}
        if not self.fake:
            specs = {k: (f, None) for k, (f, _m) in specs.items() if k != "stream"}
        for name, (flavor, meta) in specs.items():
            insts[name] = api.create_instance(ctx, name, flavor, metadata=meta)
            self.booted.append(insts[name])
        for name, inst in insts.items():
            insts[name] = api.wait(ctx, inst.uuid)
            step = Step("boot", name)
            self._record(step, insts[name], insts[name].host, started,
                         MigrationStatus.COMPLETED, VMState.ACTIVE, False)
            step.status, step.route = "-", str(insts[name].host)
            step.ok = insts[name].vm_state == VMState.ACTIVE
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                   TimeElapsedColumn())
        fake_only = (f"skipped: needs a guest that dirties memory on demand (fake driver "
                     f"only; driver {self.cloud.driver_name!r})")
        with Progress(*columns, console=self.console) as progress:
            if caps.supports_resize:
                self._cold(progress, insts["web"], "resize small->medium + confirm",
                           lambda i: api.resize(ctx, i.uuid, "medium"), confirm=True)
                self._cold(progress, insts["db"], "resize medium->large + revert",
                           lambda i: api.resize(ctx, i.uuid, "large"), confirm=False)
            else:
                self._skip("resize", "web, db", "skipped: the driver does not claim resize")
            if caps.supports_cold_migration:
                self._cold(progress, insts["batch"], "cold migrate",
                           lambda i: api.migrate(ctx, i.uuid), confirm=True)
            else:
                self._skip("cold migrate", "batch",
                           "skipped: the driver does not claim cold migration")
            if not caps.supports_live_migration:
                self._skip("live migration", "cache, web",
                           "skipped: the driver does not claim live migration")
                return
            self._live(progress, insts["cache"])
            if self.fake:
                self._abort(progress, insts["stream"])
            else:
                self._skip("live migrate + abort", "stream", fake_only)
            self._injected_failure(progress, insts["web"])

    def _cold(self, progress: Progress, inst: Instance, label: str,
              start: Callable[[Instance], None], confirm: bool) -> None:
        inst = self.api.show_instance(self.ctx, inst.uuid)
        source, t0, after = inst.host, time.monotonic(), self._last_id()
        step = Step(label, inst.name)
        start(inst)
        done = self._watch(progress, f"{inst.name}: {label}", inst,
                           self._latest_migration(inst, after))
        if done.vm_state != VMState.RESIZED:
            self._record(step, done, source, t0, MigrationStatus.FINISHED, VMState.RESIZED,
                         True)
            return
        if confirm:
            self.api.confirm_resize(self.ctx, inst.uuid)
            expect = MigrationStatus.CONFIRMED
        else:
            self.api.revert_resize(self.ctx, inst.uuid)
            expect = MigrationStatus.REVERTED
        done = self.api.wait(self.ctx, inst.uuid)
        step.notes.append(f"flavor now {done.flavor.name}")
        self._record(step, done, source, t0, expect, VMState.ACTIVE, confirm)

    def _live(self, progress: Progress, inst: Instance) -> None:
        inst = self.api.show_instance(self.ctx, inst.uuid)
        source, t0 = inst.host, time.monotonic()
        step = Step("live migrate (busy guest)", inst.name)
        mig = self.api.live_migrate(self.ctx, inst.uuid)
        done = self._watch(progress, f"{inst.name}: live migration", inst, lambda: mig.id)
        details = self.api.get_migration_details(self.ctx, int(mig.id or 0))
        applied = self.api.get_migration(self.ctx, inst.uuid, int(mig.id or 0)).downtime_steps
        step.notes.append("downtime steps " + ">".join(str(d) for d in applied) + " ms"
                          if applied else "no downtime step needed")
        measured = details.get("downtime_ms")
        step.notes.append((f"final downtime {measured} ms" if measured is not None
                           else "no downtime measurement") + " after "
                          f"{details.get('memory_iteration', '?')} iterations")
        for entry in details.get("timeline") or []:
            if entry["action"] != "set_downtime":  # the steps are listed above
                step.notes.append(f"at {entry['t_s']:.1f}s {entry['action']} "
                                  f"{entry['value']}: {entry['reason']}")
        self._record(step, done, source, t0, MigrationStatus.COMPLETED, VMState.ACTIVE, True)
        if self.fake:  # only the fake guest is made to dirty memory faster than the link
            step.ok = step.ok and len(applied) > 1
        else:
            step.notes.append("downtime-step check skipped (fake driver only)")

    def _abort(self, progress: Progress, inst: Instance) -> None:
        inst = self.api.show_instance(self.ctx, inst.uuid)
        source, t0 = inst.host, time.monotonic()
        step = Step("live migrate + abort", inst.name)
        mig = self.api.live_migrate(self.ctx, inst.uuid)
        aborted: list[int] = []
        running_since: list[float] = []

        def maybe_abort(m: Migration) -> None:
            if aborted or m.status != MigrationStatus.RUNNING:
                return
            running_since.append(time.monotonic())
            if time.monotonic() - running_since[0] >= 0.5:  # it is clearly not converging
                aborted.append(m.progress)
                self.api.live_migration_abort(self.ctx, inst.uuid, int(m.id or 0))

        done = self._watch(progress, f"{inst.name}: live migration (to abort)", inst,
                           lambda: mig.id, maybe_abort)
        step.notes.append(f"aborted while running, at {aborted[0]}%" if aborted
                          else "never aborted")
        self._record(step, done, source, t0, MigrationStatus.CANCELLED, VMState.ACTIVE,
                     False)
        step.ok = step.ok and bool(aborted)

    def _injected_failure(self, progress: Progress, inst: Instance) -> None:
        inst = self.api.show_instance(self.ctx, inst.uuid)
        source, t0 = str(inst.host), time.monotonic()
        step = Step("injected failure, rollback", inst.name)
        rpc = self.cloud.computes[source].manager.compute_rpc

        def lose_pre_live_migration(method: str, host: str) -> None:
            if method == "pre_live_migration":
                rpc.fault_hook = None
                raise oslo_messaging.MessagingTimeout(
                    f"demo: the pre_live_migration message to {host} was lost")

        rpc.fault_hook = lose_pre_live_migration
        try:
            mig = self.api.live_migrate(self.ctx, inst.uuid)
            done = self._watch(progress, f"{inst.name}: live migration (fault)", inst,
                               lambda: mig.id)
            final = self.api.get_migration(self.ctx, inst.uuid, int(mig.id or 0))
            step.notes.append(final.error.split(": ", 1)[-1][:60])
            self._record(step, done, source, t0, MigrationStatus.ERROR, VMState.ACTIVE,
                         False)
        finally:
            rpc.fault_hook = None

    # -- output -----------------------------------------------------------------------------

    def summary(self) -> Table:
        table = Table(title="virtsdk demo: embedded cloud, 3 hosts, driver "
                            f"{self.cloud.driver_name!r}")
        for col in ("step", "instance", "route", "migration", "vm_state", "seconds",
                    "notes", "ok"):
            table.add_column(col)
        for s in self.steps:
            table.add_row(s.name, s.instance, s.route, s.status, s.vm_state,
                          f"{s.seconds:.2f}", "; ".join(s.notes),
                          "[green]yes[/green]" if s.ok else "[red]NO[/red]")
        return table


def run(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=170)
    demo = Demo(args, console)
    t0 = time.monotonic()
    try:
        ok = demo.run()
    except BrokerUnreachable:
        raise  # one line from the entry point, nothing to summarise
    except VirtSDKError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        ok = False
    console.print(demo.summary())
    console.print(f"{'all steps succeeded' if ok else 'SOME STEPS FAILED'} in "
                  f"{time.monotonic() - t0:.1f}s")
    return 0 if ok else 1
