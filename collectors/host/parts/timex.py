"""adjtimex(2): node_exporter's timex collector (NTP sync status, offset, frequency, PPS).

A syscall, not a file, so only this machine has it: the SSH transport reports no timex figures. The
shipped unit's SystemCallFilter allows adjtimex and clock_adjtime for this read (modes 0 changes
nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import ClassVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS: tuple[str, ...] = ()
TIME_ERROR = 5
STA_NANO = 0x2000
PPM16 = 1_000_000.0 * 65536.0


class Timeval(ctypes.Structure):
    _fields_: ClassVar = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timex(ctypes.Structure):
    """struct timex of <sys/timex.h>."""

    _fields_: ClassVar = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time", Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int), ("_pad", ctypes.c_int * 11),
    ]  # fmt: skip


def adjtimex() -> tuple[int, Timex] | None:
    """Reads the kernel clock state (modes 0: nothing is changed); None where it is refused."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    tx = Timex()
    state = int(libc.adjtimex(ctypes.byref(tx)))
    return None if state < 0 else (state, tx)


def families(state: int, tx: Timex) -> list[Metric]:
    div = 1e9 if tx.status & STA_NANO else 1e6

    def g(name: str, doc: str, v: float) -> Metric:
        return GaugeMetricFamily(f"node_timex_{name}", doc, value=v)

    def c(name: str, doc: str, v: float) -> Metric:
        return CounterMetricFamily(f"node_timex_{name}", doc, value=v)

    return [
        g("sync_status", "Is clock synchronized to a reliable server (1 = yes, 0 = no).", 0.0 if state == TIME_ERROR else 1.0),
        g("offset_seconds", "Time offset in between local system and reference clock.", tx.offset / div),
        g("frequency_adjustment_ratio", "Local clock frequency adjustment.", 1 + tx.freq / PPM16),
        g("maxerror_seconds", "Maximum error in seconds.", tx.maxerror / 1e6),
        g("estimated_error_seconds", "Estimated error in seconds.", tx.esterror / 1e6),
        g("status", "Value of the status array bits.", float(tx.status)),
        g("loop_time_constant", "Phase-locked loop time constant.", float(tx.constant)),
        g("tick_seconds", "Seconds between clock ticks.", tx.tick / 1e6),
        g("pps_frequency_hertz", "Pulse per second frequency.", tx.ppsfreq / PPM16),
        g("pps_jitter_seconds", "Pulse per second jitter.", tx.jitter / div),
        g("pps_shift_seconds", "Pulse per second interval duration.", float(tx.shift)),
        g("pps_stability_hertz", "Pulse per second stability, average of recent frequency changes.", tx.stabil / PPM16),
        c("pps_jitter_total", "Pulse per second count of jitter limit exceeded events.", float(tx.jitcnt)),
        c("pps_calibration_total", "Pulse per second count of calibration intervals.", float(tx.calcnt)),
        c("pps_error_total", "Pulse per second count of calibration errors.", float(tx.errcnt)),
        c("pps_stability_exceeded_total", "Pulse per second count of stability limit exceeded events.", float(tx.stbcnt)),
        g("tai_offset_seconds", "International Atomic Time (TAI) offset.", float(tx.tai)),
    ]  # fmt: skip


def collect(fs: Files, opts: Options) -> list[Metric]:
    if not fs.live:
        return []
    got = adjtimex()
    return [] if got is None else families(*got)
