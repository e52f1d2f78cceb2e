"""Idle time on a node clock that runs, stops, and jumps back (the consolidation node's rules)."""

import pytest

from cl_core_ros.core.idle_clock import IdleClock


def _run(clock: IdleClock, readings):
    for node, steady in readings:
        clock.observe(node, steady)
    return clock.idle_seconds()


def test_a_running_clock_counts_as_it_runs_even_faster_than_wall_time():
    clock = IdleClock(stall_after=2.0)
    clock.observe(100.0, 0.0)
    clock.start_idle()
    assert _run(clock, [(101.0, 0.5), (104.0, 2.0)]) == pytest.approx(4.0)  # a bag at 2x
    clock.stop_idle()
    assert clock.idle_seconds() is None
    clock.start_idle()
    assert _run(clock, [(105.0, 2.5)]) == pytest.approx(1.0)


def test_a_stopped_clock_falls_back_to_steady_time_and_back():
    clock = IdleClock(stall_after=2.0)
    clock.observe(100.0, 0.0)
    clock.start_idle()
    assert _run(clock, [(100.5, 0.5), (100.5, 1.5)]) == pytest.approx(0.5)  # not yet stalled
    assert not clock.stalled
    assert _run(clock, [(100.5, 2.5)]) == pytest.approx(2.5)  # stalled 2 s: both counted
    assert clock.stalled
    assert _run(clock, [(100.5, 4.5)]) == pytest.approx(4.5)
    assert _run(clock, [(101.0, 5.0)]) == pytest.approx(5.0) and not clock.stalled


def test_a_backward_jump_keeps_the_idle_time_and_is_never_negative():
    clock = IdleClock(stall_after=2.0)
    clock.observe(36_000.0, 0.0)
    clock.start_idle()
    assert _run(clock, [(36_000.5, 0.5), (0.5 + 1.0, 1.0)]) == pytest.approx(0.5)  # -10 h
    assert clock.jumps == 1
    assert _run(clock, [(2.0, 1.5)]) == pytest.approx(1.0)
    clock.jumped(1.0, 2.0)  # reported by the clock's jump callback
    assert _run(clock, [(1.5, 2.5)]) == pytest.approx(1.5) and clock.jumps == 2


def test_nothing_counts_before_the_clock_has_started():
    clock = IdleClock(stall_after=1.0)
    clock.observe(0.0, 0.0)
    clock.start_idle()
    assert _run(clock, [(0.0, 5.0), (0.0, 50.0)]) == 0.0  # use_sim_time, no /clock yet
    assert not clock.started and not clock.stalled
    assert _run(clock, [(10.0, 51.0), (11.0, 52.0)]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        IdleClock(stall_after=0.0)
