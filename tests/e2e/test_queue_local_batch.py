"""The queue runner's group commit for local delivery (`LocalBatcher`): recipients that wait
while a batch runs share the next one (at most `limit`), and a recipient that arrives alone
while the loop is busy takes an express batch instead of waiting."""

from __future__ import annotations

import asyncio
import threading
import time

from courriel.queue.runner import LocalBatcher


class BlockingLocal:
    """Stands in for LocalDelivery: records each batch; the first one waits for `release`."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.release = threading.Event()

    def deliver_batch(self, requests):
        self.batches.append(list(requests))
        if len(self.batches) == 1:
            assert self.release.wait(10)
        return [f"delivered {r}" for r in requests]


class Runner:
    def __init__(self):
        self.local = BlockingLocal()
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        return task


async def _until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_waiting_recipients_share_a_batch_and_a_lone_one_takes_the_express():
    async def scenario():
        runner = Runner()
        batcher = LocalBatcher(runner, limit=3)
        first = asyncio.ensure_future(batcher.deliver("a"))
        await _until(lambda: len(runner.local.batches) == 1, "the first batch running")
        lone = asyncio.ensure_future(batcher.deliver("b"))  # the loop is busy and nobody waits
        assert await asyncio.wait_for(lone, 10) == "delivered b"
        waiting = [asyncio.ensure_future(batcher.deliver(r)) for r in "cdefg"]
        await _until(lambda: len(runner.local.batches) == 3, "the express batch")
        runner.local.release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *waiting), 10)
        assert results == [f"delivered {r}" for r in "acdefg"]
        assert runner.local.batches == [["a"], ["b"], ["c", "d", "e"], ["f", "g"]]
        await asyncio.wait_for(asyncio.gather(*runner.tasks), 10)
        assert not batcher.draining and not batcher.express and not batcher.waiting

    asyncio.run(scenario())
