"""A job's jitter is a fixed phase: its fire times are ``origin + k * interval``, so the mean period is
the interval (the jitter used to be added to each fire time and accumulate: 5 s ran every ~5.125 s)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from agent.scheduler import PhasedIntervalTrigger, job_trigger


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def walk(trigger: PhasedIntervalTrigger, first: float, runs: int, late: float = 0.0) -> list[float]:
    """Fire times as APScheduler asks for them: each from the previous one (a datetime, so rounded to
    the microsecond), ``now`` a little after it."""
    times = [first]
    for _ in range(runs):
        prev = dt(times[-1])
        nxt = trigger.get_next_fire_time(prev, dt(prev.timestamp() + late)).timestamp()
        assert nxt > prev.timestamp()
        times.append(nxt)
    return times


@pytest.mark.parametrize("interval", [0.1, 0.2, 0.3, 7.0])
def test_a_fire_time_rounded_to_the_microsecond_gives_the_next_one(interval: float) -> None:
    """APScheduler keeps fire times as datetimes; a grid point rounded down must not come back again
    (that looped forever in APScheduler's missed-run walk)."""
    for origin in (1_767_225_600.123456789, 1_767_225_600.0000004, 1_767_225_600.9999996):
        trigger = PhasedIntervalTrigger(interval, origin)
        for k in range(1, 2000, 37):
            on_grid = dt(origin + k * interval)  # rounded, maybe down
            nxt = trigger.get_next_fire_time(on_grid, on_grid).timestamp()
            assert nxt == pytest.approx(origin + (k + 1) * interval, abs=1e-6)


@pytest.mark.parametrize("interval", [0.1, 0.25, 5.0, 30.0, 60.0, 3600.0])
def test_fire_times_are_phase_plus_whole_intervals(interval: float) -> None:
    now = 1_767_225_600.0
    trigger = job_trigger(interval, now)
    phase = trigger.origin - now
    assert 0 <= phase <= min(interval * 0.05, 5.0)
    first = now + 0.3 * min(1.0, interval / 10)  # the quick first run, off the grid
    times = walk(trigger, first, 100, late=interval * 0.01)
    k0 = round((times[1] - trigger.origin) / interval)
    assert k0 in (0, 1)  # the first grid point after the first run
    for k, t in enumerate(times[1:], start=k0):
        assert t == pytest.approx(trigger.origin + k * interval, abs=1e-6)
    # over 100 runs the mean period is the interval (the old trigger: interval + mean jitter)
    mean = (times[-1] - times[1]) / 99
    assert mean == pytest.approx(interval, rel=1e-6)  # datetime keeps microseconds


def test_phases_differ_between_jobs_and_stay_put() -> None:
    random.seed(7)
    now = 1_767_225_600.0
    phases = {round(job_trigger(30.0, now).origin - now, 6) for _ in range(50)}
    assert len(phases) == 50 and max(phases) <= 1.5
    trigger = job_trigger(30.0, now)
    origin = trigger.origin
    walk(trigger, now, 20)
    assert trigger.origin == origin


def test_missed_periods_are_skipped_onto_the_same_grid() -> None:
    now = 1_767_225_600.0
    trigger = PhasedIntervalTrigger(10.0, now + 0.5)
    # the wall clock jumped a month ahead: one call, and the next fire time is still on the grid
    month = 30 * 86400.0
    nxt = trigger.get_next_fire_time(dt(now + 10.5), dt(now + month + 3.0)).timestamp()
    assert nxt == pytest.approx(now + month + 10.5)
    # first computation without a previous fire time: the first grid point after now
    assert trigger.get_next_fire_time(None, dt(now + 12.0)).timestamp() == pytest.approx(now + 20.5)
