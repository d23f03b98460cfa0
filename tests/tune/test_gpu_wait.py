"""Waiting for an autoscaling cluster to add a GPU node (cluster.yaml starts its GPU workers at zero)."""

from __future__ import annotations

from raysearch.tune.driver import wait_for_gpu


class Clock:
    """A fake clock for the wait loop: ``sleep`` advances it; resources appear after ``gpu_after`` seconds."""

    def __init__(self, gpu_after: float | None) -> None:
        self.now, self.gpu_after, self.requests = 0.0, gpu_after, 0

    def resources(self) -> dict:
        up = self.gpu_after is not None and self.now >= self.gpu_after
        return {"CPU": 8.0, **({"GPU": 1.0} if up else {})}

    def sleep(self, s: float) -> None:
        self.now += s


def test_returns_at_once_when_a_gpu_is_there():
    c = Clock(gpu_after=0.0)
    assert wait_for_gpu(c.resources, 60, log=lambda s: None, sleep=c.sleep)
    assert c.now == 0.0


def test_waits_for_the_gpu_node_and_asks_the_autoscaler_once(monkeypatch):
    import raysearch.tune.driver as driver

    c = Clock(gpu_after=42.0)
    monkeypatch.setattr(driver.time, "monotonic", lambda: c.now)
    said = []
    ok = wait_for_gpu(c.resources, 600, log=said.append, sleep=c.sleep, poll_s=5.0,
                      request=lambda: setattr(c, "requests", c.requests + 1))
    assert ok and c.requests == 1
    assert 42.0 <= c.now <= 47.0  # noticed within one poll
    assert "waiting up to 600 s" in said[0] and "GPU node joined" in said[-1]


def test_gives_up_after_the_timeout(monkeypatch):
    import raysearch.tune.driver as driver

    c = Clock(gpu_after=None)
    monkeypatch.setattr(driver.time, "monotonic", lambda: c.now)
    assert not wait_for_gpu(c.resources, 30, log=lambda s: None, sleep=c.sleep, poll_s=5.0)
    assert 30.0 <= c.now <= 31.0
    assert not wait_for_gpu(c.resources, 0, log=lambda s: None, sleep=c.sleep)  # no waiting asked for
