"""The scan's decisions at their edges, with real Redis and the simulator: a certificate failing for weeks
keeps backing off."""

from __future__ import annotations

from datetime import datetime, timedelta

from rotation.core.model import Outcome
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions


def test_a_certificate_failing_for_weeks_still_backs_off(simulator: ClusterSimulator,
                                                         service_env: dict[str, str]) -> None:
    """Doubling from 5 minutes, 40 failures are 5m * 2**39: more than a timedelta holds. The backoff stays
    at its cap (6h) instead of the outcome's bookkeeping raising, which left the certificate without a
    backoff (rotated again at every scan) and its rotation unrecorded in the counters."""
    with ServiceContext() as ctx:
        ctx.state.update_state("sim", "cm", failures=60)  # 6-hourly failures for two weeks, a node down
        simulator.node_down(2)
        try:
            rotated = rotate_and_record(ctx, "sim", "cm", RotationOptions(rotation_id="weeks-1", poll_interval=0.05))
        finally:
            simulator.node_down(2, down=False)
        assert rotated.record.outcome is Outcome.REFUSED, rotated.record.error
        state = ctx.state.state("sim", "cm")
        assert state["failures"] == 61 and state["last_outcome"] == "refused"
        wait = datetime.fromisoformat(state["next_attempt"]) - ctx.clock.now()
        assert timedelta(hours=6) * 0.79 <= wait <= timedelta(hours=6) * 1.21
