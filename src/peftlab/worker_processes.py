"""Independent jobs spread over fresh Python processes, each on one torch thread.

`map_in_processes("package.module:function", shared, items, workers)` calls
`function(item, *shared)` for every item, `workers` at a time, each worker a fresh
`python -c` (not multiprocessing, which would import the caller's script again) fed from one
queue; results and arguments travel pickled through the worker's stdin and stdout. A worker
computes as the caller does: one torch thread and the caller's warning filters (under pytest a
FutureWarning is an error there too). Jobs that seed themselves give the same results as one
process, only sooner (lesson 07 runs its methods this way).
"""

from __future__ import annotations

import importlib
import pickle
import queue
import warnings
from collections.abc import Hashable, Sequence


def _send(stream, obj) -> None:
    data = pickle.dumps(obj)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the other side closed the pipe")
    return pickle.loads(stream.read(int.from_bytes(head, "little")))


def _resolve(target: str):
    module, _, function = target.partition(":")
    if not module or not function:
        raise ValueError(f"target={target!r}: name the function as 'package.module:function'")
    return getattr(importlib.import_module(module), function)


def _worker_main() -> None:
    """A worker: it reads (target, shared arguments, warning filters), then one item at a time,
    and answers each with the target's result."""
    import os
    import sys

    import torch

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the answers
    target, shared, filters = _receive(sys.stdin.buffer)
    torch.set_num_threads(1)
    warnings.filters[:] = filters
    function = _resolve(target)
    while (item := _receive(sys.stdin.buffer)) is not None:
        _send(answers, function(item, *shared))


def _drain(todo: queue.Queue, target: str, shared: tuple) -> dict:
    """The target's result for items taken from `todo` until it is empty, in one fresh process."""
    import subprocess
    import sys
    import tempfile

    code = "from peftlab.worker_processes import _worker_main; _worker_main()"
    log = tempfile.TemporaryFile()  # its stderr: a pipe nobody reads could fill and stall it
    worker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log)  # fmt: skip
    done = {}
    try:
        _send(worker.stdin, (target, shared, list(warnings.filters)))
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                break
            _send(worker.stdin, item)
            try:
                done[item] = _receive(worker.stdout)
            except EOFError:
                worker.kill()
                worker.wait()
                log.seek(0)
                error = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{item}: the worker process failed:\n{error}") from None
        _send(worker.stdin, None)
        worker.stdin.close()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()
    return done


def map_in_processes(
    target: str, shared: tuple, items: Sequence[Hashable], workers: int
) -> dict[Hashable, object]:
    """{item: target(item, *shared)} computed in `workers` fresh processes (`target` is
    'package.module:function', importable in a fresh interpreter; items and results pickle)."""
    from concurrent.futures import ThreadPoolExecutor

    if workers < 1:
        raise ValueError(f"workers={workers}: give at least one process")
    _resolve(target)  # a wrong name fails here, not in every worker
    todo: queue.Queue = queue.Queue()
    for item in items:
        todo.put(item)
    results: dict = {}
    with ThreadPoolExecutor(workers) as pool:  # each thread feeds one worker process
        futures = [pool.submit(_drain, todo, target, tuple(shared))
                   for _ in range(min(workers, len(items)))]  # fmt: skip
        for future in futures:
            results |= future.result()
    return results
