"""How long a learner has been idle, on a clock that may stop or jump back; no rclpy.

The consolidation node measures idle time on the node clock, which follows ``/clock`` when
``use_sim_time`` is set. That clock is not monotonic: a bag that ended stops it, the next bag
may start hours earlier, ``ros2 bag play --loop`` jumps back at every loop. :class:`IdleClock`
accumulates idle time from observations of (node time, steady time), with these rules:

- the node clock moving forward counts as it moves (a bag played at 2x counts double);
- the node clock moving back (a jump) counts nothing, and the idle time gathered so far is
  kept: ``now - idle_since`` is never negative;
- the node clock standing still for ``stall_after`` seconds of steady time (a bag that ended
  or was paused) counts steady time from then on, the stalled seconds included, until it
  moves again;
- before the node clock has ever shown a time other than zero (``use_sim_time`` and no
  ``/clock`` yet), nothing counts: see :attr:`IdleClock.started`.
"""


class IdleClock:
    """Accumulates idle seconds from (node seconds, steady seconds) observations."""

    def __init__(self, *, stall_after: float) -> None:
        """Count steady time once the node clock has stood still ``stall_after`` seconds.

        Raises:
            ValueError: ``stall_after`` is not positive.

        """
        if stall_after <= 0:
            raise ValueError(f'stall_after must be positive, got {stall_after}')
        self.stall_after = stall_after
        self.started = False      # the node clock has shown a non-zero time
        self.stalled = False      # the node clock stands still: steady time counts
        self.jumps = 0            # backward jumps seen
        self._idle: float | None = None
        self._last: tuple[float, float] | None = None
        self._still_for = 0.0

    @property
    def idle(self) -> bool:
        """Whether idle time is being measured."""
        return self._idle is not None

    def observe(self, node_now: float, steady_now: float) -> None:
        """Take a reading of both clocks (call often: every check and every status)."""
        was_started = self.started
        if node_now != 0.0:
            self.started = True
        if self._last is None:
            self._last = (node_now, steady_now)
            return
        node_step = node_now - self._last[0]
        steady_step = max(steady_now - self._last[1], 0.0)
        self._last = (node_now, steady_now)
        counted = 0.0
        if node_step < 0:
            self.jumps += 1
            self._still_for = 0.0
            self.stalled = False
        elif node_step == 0:
            self._still_for += steady_step
            if self.started and self._still_for >= self.stall_after:
                counted = self._still_for if not self.stalled else steady_step
                self.stalled = True
        else:
            counted = node_step if was_started else 0.0  # the first /clock starts it
            self._still_for = 0.0
            self.stalled = False
        if self._idle is not None:
            self._idle += counted

    def jumped(self, node_now: float, steady_now: float) -> None:
        """Tell of a jump the clock reported (the time counted so far is kept)."""
        self.jumps += 1
        self._last = (node_now, steady_now)
        self._still_for = 0.0
        self.stalled = False
        if node_now != 0.0:
            self.started = True

    def start_idle(self) -> None:
        """Start counting idle time from zero (the learner became idle)."""
        self._idle = 0.0

    def stop_idle(self) -> None:
        """Stop counting idle time (the learner is busy)."""
        self._idle = None

    def idle_seconds(self) -> float | None:
        """Idle seconds counted so far (never negative), or None when not idle."""
        return self._idle
