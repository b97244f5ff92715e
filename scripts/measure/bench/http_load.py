"""Closed-loop HTTP load from several processes, for rates one Python process cannot drive.

`make bench-gpu` asks a GPU for thousands of requests a second, from the GPU host itself (wrk is rarely
installed there). Python threads posting with requests share one GIL and spend about a millisecond of
CPU on each request, so they cap the rate they can measure near a thousand a second. Here each process runs its
share of the clients as asyncio tasks on one aiohttp session, all processes start together, and every
request is recorded as (start offset s, latency ms, status), status 0 for one with no HTTP answer.
Measured on a 2-core VM against TorchServe's do-nothing handler at c32 (2026-12-05): threads with
requests 880 req/s at 1 ms of client CPU a request; this client 3,900 req/s (one process) and 4,580
(two) at 0.15 ms.

    with LoadProcesses(4) as load:
        cell = load.run(url, body, headers, concurrency=128, seconds=10)   # cell.records, cell.cpu_s
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.pool import Pool
from typing import Mapping

import aiohttp

from scripts.measure.bench.load_client import require_loopback

START_MARGIN_S = 0.3  # from handing out the shares to the common start: every process is polling its clock by then
REQUEST_TIMEOUT_S = 60.0
Record = tuple[float, float, int]


@dataclass(frozen=True)
class Cell:
    records: list[Record]
    cpu_s: float  # the load processes' own CPU time in the cell: a client near its cores' limit shows here
    processes: int

    def cpu_share(self, seconds: float, cpus: int | None = None) -> float:
        """The client's share of the host's CPU over the cell (it runs on the server's host)."""
        return round(self.cpu_s / (seconds * (cpus or os.cpu_count() or 1)), 3)

    def client_fields(self, seconds: float) -> dict:
        """Which client loaded the cell and how much of the host it took (it shares the host with the server)."""
        return {"client": f"aiohttp x{self.processes}", "client_cpu_share": self.cpu_share(seconds)}


def default_processes(cpus: int | None = None) -> int:
    """A quarter of the cores, at least one: the rest are the server's (its frontend, workers and their decode threads)."""
    return max(1, (cpus or os.cpu_count() or 1) // 4)


def shares(concurrency: int, processes: int) -> list[int]:
    """`concurrency` clients spread over at most `processes` processes, none empty, the larger shares first."""
    used = max(1, min(concurrency, processes))
    return [concurrency // used + (1 if i < concurrency % used else 0) for i in range(used)]


class LoadProcesses:
    """A pool of load processes, started once (they import nothing heavy) and reused for every cell."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or default_processes()

    def __enter__(self) -> "LoadProcesses":
        # spawn: the children start clean, not as forks of a process that holds threads (the GPU sampler) or CUDA
        self._pool: Pool = multiprocessing.get_context("spawn").Pool(self.processes)
        self._pool.map(_ready, range(self.processes), chunksize=1)  # every child up before the first clock starts
        return self

    def __exit__(self, *exc) -> None:
        self._pool.terminate()
        self._pool.join()

    def run(self, url: str, body: bytes, headers: Mapping[str, str], concurrency: int, seconds: float) -> Cell:
        """`concurrency` keep-alive clients posting `body` back to back for `seconds`, from a common start.
        Loopback only, as the bench's other client: it measures the server on this host, nobody else's."""
        require_loopback(url)
        start_at = time.monotonic() + START_MARGIN_S
        jobs = [(url, body, dict(headers), share, start_at, seconds) for share in shares(concurrency, self.processes)]
        parts = self._pool.starmap(_run_share, jobs, chunksize=1)
        return Cell([record for records, _ in parts for record in records], sum(cpu for _, cpu in parts), len(jobs))


def _ready(_: int) -> bool:
    time.sleep(0.05)  # hold this child so that the next item goes to another one
    return True


def _run_share(url: str, body: bytes, headers: dict[str, str], clients: int, start_at: float,
               seconds: float) -> tuple[list[Record], float]:
    cpu = time.process_time()
    records = asyncio.run(_clients(url, body, headers, clients, start_at, seconds))
    return records, time.process_time() - cpu


async def _clients(url: str, body: bytes, headers: dict[str, str], clients: int, start_at: float, seconds: float) -> list[Record]:
    """time.monotonic is one clock for every process on the host, so offsets from start_at line up across them."""
    records: list[Record] = []
    deadline = start_at + seconds
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def client() -> None:
            while (begin := time.monotonic()) < deadline:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = 0
                records.append((begin - start_at, (time.monotonic() - begin) * 1000, status))

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        await asyncio.gather(*(client() for _ in range(clients)))
    return records
