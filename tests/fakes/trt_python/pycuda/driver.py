"""A FAKE OF pycuda.driver FOR TESTS ON MACHINES WITHOUT A GPU: NOT pycuda, no CUDA.

"Device" memory is host memory: ``mem_alloc`` hands out integer addresses into ``_MEMORY``
(address -> bytearray), which the FAKE tensorrt's ``execute_async_v3`` reads and writes; copies
and streams are synchronous. Only what ``TrtModel`` (tasks/agent/agent.py) calls."""

from __future__ import annotations

import itertools

import numpy as np

_MEMORY: dict[int, bytearray] = {}
_ADDRESSES = itertools.count(0x10000, 0x10000)


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        self._address = next(_ADDRESSES)
        _MEMORY[self._address] = bytearray(int(nbytes))

    def __int__(self) -> int:
        return self._address

    def free(self) -> None:
        _MEMORY.pop(self._address, None)


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(nbytes)


def pagelocked_empty(shape, dtype) -> np.ndarray:
    return np.empty(shape, dtype)


class Stream:
    handle = 0

    def synchronize(self) -> None:
        pass


def memcpy_htod_async(dest, src: np.ndarray, stream: Stream | None = None) -> None:
    raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
    _MEMORY[int(dest)][: raw.size] = raw.tobytes()


def memcpy_dtoh_async(dest: np.ndarray, src, stream: Stream | None = None) -> None:
    dest.view(np.uint8).reshape(-1)[:] = np.frombuffer(_MEMORY[int(src)], np.uint8, dest.nbytes)
