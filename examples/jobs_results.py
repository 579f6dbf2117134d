"""The jobs/results example of Julia's Distributed manual ("Remote references and
AbstractChannels"), in Python.

One channel of jobs and one of results, both living on the master; four workers take jobs and
put results; the master feeds the jobs from a task of its own and collects the results.

Run it with ``python examples/jobs_results.py``. The functions it ships to the workers are
defined here, in ``__main__``, so they travel by value.
"""

from __future__ import annotations

import random
import time

import pydistributed as dist
from pydistributed import Channel, RemoteChannel


def do_work(jobs: RemoteChannel, results: RemoteChannel) -> None:
    """Take jobs until the jobs channel is closed and drained; put a result for each."""
    for job_id in jobs:
        exec_time = random.random()
        time.sleep(exec_time)  # simulates elapsed time doing actual work
        dist.put(results, (job_id, exec_time, dist.myid()))


def make_jobs(jobs: RemoteChannel, n: int) -> None:
    """Feed the jobs channel with ``n`` jobs."""
    for i in range(1, n + 1):
        dist.put(jobs, i)


def main() -> None:
    added = dist.addprocs(4)
    try:
        jobs = RemoteChannel(lambda: Channel(32))
        results = RemoteChannel(lambda: Channel(32))

        n = 12
        # Julia's `@async make_jobs(n)`: a task on a thread of this process.
        feeder = dist.spawnat(dist.myid(), make_jobs, jobs, n)
        for p in dist.workers():  # start tasks on the workers to process requests in parallel
            dist.remote_do(do_work, p, jobs, results)

        t0 = time.perf_counter()
        while n > 0:  # print out results
            job_id, exec_time, where = dist.take(results)
            print(f"{job_id} finished in {exec_time:.2f} seconds on worker {where}")
            n -= 1
        print(f"elapsed: {time.perf_counter() - t0:.2f} seconds")
        dist.fetch(feeder)
        jobs.close()  # the workers' loops end
    finally:
        dist.rmprocs(added)


if __name__ == "__main__":
    main()
