"""Two requests racing on one instance: exactly one proceeds, the other is refused.

The loser gets Conflict when it meets the winner's task in flight, or
InstanceInvalidState when the winner already finished and changed the instance's
state (a fast confirm beats a revert); never do both proceed."""

from __future__ import annotations

import threading

import pytest

from tests.orchestration.conftest import ALL_BACKENDS, boot, check_intact
from virtsdk.exceptions import Conflict, InstanceInvalidState
from virtsdk.states import VMState

BACKENDS = ALL_BACKENDS
REFUSED = (Conflict, InstanceInvalidState)


def race(calls):
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("pair", [
    ("resize", "resize"), ("resize", "live"), ("live", "live"), ("migrate", "live"),
    ("migrate", "resize"),
])
def test_exactly_one_of_two_racing_requests_wins(cloud, fabric, pair):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    calls = {"resize": lambda: api.resize(ctx, inst.uuid, "medium"),
             "live": lambda: api.live_migrate(ctx, inst.uuid),
             "migrate": lambda: api.migrate(ctx, inst.uuid)}
    results = race([calls[name] for name in pair])
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(losers) == 1, results
    assert isinstance(losers[0], REFUSED), losers[0]
    done = api.wait(ctx, inst.uuid)
    winner = pair[0] if not isinstance(results[0], Exception) else pair[1]
    assert done.vm_state == (VMState.ACTIVE if winner == "live" else VMState.RESIZED)
    assert len(api.list_migrations(ctx, instance_uuid=inst.uuid)) == 1
    check_intact(cloud, fabric, done, before, memory=winner == "live")
    if done.vm_state == VMState.RESIZED:
        results = race([lambda: api.confirm_resize(ctx, inst.uuid),
                        lambda: api.revert_resize(ctx, inst.uuid)])
        assert sum(isinstance(r, Exception) for r in results) == 1, results
        assert all(isinstance(r, REFUSED) for r in results if isinstance(r, Exception))
        check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=False)
