from gateway.backoff import Backoff


def test_waits_double_up_to_the_cap_and_start_again_after_a_reset():
    backoff = Backoff(1.0, 30.0)
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.failures == 7
    backoff.reset()
    assert (backoff.peek(), backoff.next()) == (1, 1)


def test_jitter_takes_its_share_of_each_wait_at_random():
    draws = iter([0.0, 1.0, 0.5])
    backoff = Backoff(4.0, 100.0, jitter=0.5, rng=lambda: next(draws))
    assert [backoff.next() for _ in range(3)] == [4.0, 4.0, 12.0]   # 4, 8 x (1 - .5), 16 x (1 - .25)
    full = Backoff(4.0, 100.0, jitter=1.0, rng=lambda: 0.75)
    assert full.next() == 1.0


def test_a_fixed_ceiling_counts_as_a_failure_without_doubling():
    backoff = Backoff(0.5, 5.0)
    assert backoff.next(60.0) == 60.0
    assert backoff.next() == 1.0   # the second failure
