"""The processor's timing and polling window: pure values, no broker needed."""

from __future__ import annotations

from dyrygent.engine.timing import PollWindow, Timing


def test_the_polling_window_covers_every_in_flight_node_without_a_generation_change():
    # Given more nodes in flight than one window reads, and ticks that keep one generation
    window = PollWindow(8)
    flying = list(range(30))
    seen: set[int] = set()
    for _ in range(10):
        read = window.select(flying)
        assert len(read) <= 8 and read[:4] == [0, 1, 2, 3]  # the oldest, always
        seen |= set(read)
    # Then successive ticks read all of them
    assert seen == set(flying)


def test_a_small_flight_is_read_whole():
    assert PollWindow(8).select([3, 5, 9]) == [3, 5, 9]


def test_backoff_doubles_from_min_interval_up_to_ten_seconds():
    t = Timing(min_interval=0.02)
    assert [t.backoff(r) for r in (0, 1, 2)] == [0.02, 0.04, 0.08]
    assert t.backoff(30) == 10.0


def test_a_waiting_driver_comes_back_within_max_interval():
    t = Timing(min_interval=0.02, max_interval=1.0)
    assert t.wait(0) == 0.02 and t.wait(20) == 1.0


def test_an_idle_driver_backs_off_to_idle_interval_and_a_failed_publish_comes_back_soon():
    # Given a driver that keeps finding nothing to do
    t = Timing(min_interval=0.02, max_interval=1.0, idle_interval=10.0)
    idle = 0
    countdowns = []
    for _ in range(6):
        idle = t.next_idle(idle, found_work=False)
        countdowns.append(t.driver_countdown(idle, publish_failed=False))
    # Then its countdown doubles from max_interval and stops at idle_interval
    assert countdowns == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    # When it finds work, it is back to max_interval; a failed publish: min_interval
    assert t.driver_countdown(t.next_idle(5, found_work=True), publish_failed=False) == 1.0
    assert t.driver_countdown(3, publish_failed=True) == 0.02


def test_a_hold_is_suspect_past_a_quarter_of_the_lease():
    t = Timing(lease=10.0)
    assert t.renew_every == 2.0
    assert not t.may_be_dead(2.4) and t.may_be_dead(2.6)
