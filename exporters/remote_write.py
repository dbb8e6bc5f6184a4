"""Prometheus remote-write 1.0 sender with a crash-safe on-disk buffer, so an uplink outage loses nothing.

Every sample is appended to the buffer (``exporters.wal``) before it is sent and leaves it only when the
receiver acknowledged it (2xx) or it was dropped for a counted reason. Delivery rules, after the spec:

- 5xx and 429 are retried with capped exponential backoff and full jitter (``Retry-After`` honoured,
  capped); network errors likewise. Other 4xx are not retried: logged, counted, dropped.
- Batches are runs of whole buffer records and the end of the batch being sent is persisted before it
  is sent, so a re-send (after a lost acknowledgement, a timeout or ``kill -9``) is byte-for-byte the
  same request and never mixes re-sent and new samples of a series. Prometheus 2.42 rejects a re-sent,
  already stored batch with 400 "out of order sample" / "duplicate sample": while a lane is re-sending
  after such an ambiguous failure, that answer means "already stored" and counts as sent.
- Samples older than ``max_sample_age`` are dropped before sending (a too-old sample gets 500 from
  Prometheus 2.42 and would block a naive queue forever); a 5xx that says "too old"/"out of bounds" is
  dropped the same way.
- With ``backfill_lane`` on (only for receivers that accept out-of-order samples: Prometheus with
  ``out_of_order_time_window``, VictoriaMetrics, Mimir), a backlog older than ``backfill_after`` moves
  to a backfill lane and new samples go out at once on the live lane; both share ``bandwidth_limit``,
  live first. Each lane keeps per-series timestamp order.

Self metrics keep ``appended = sent + dropped + pending`` per remote at every collect (samples found
in the buffer at start count as appended).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.kernel.model import secret_value
from agent.kernel.redact import redact
from agent.kernel.results import JobResult
from agent.kernel.version import __version__
from exporters import remote_write_pb as pb
from exporters.remote_write_settings import (  # noqa: F401 - re-exported for callers
    REMOTE_NAME_PATTERN,
    BasicAuth,
    BufferSettings,
    RemoteWriteSettings,
    TLSSettings,
)
from exporters.wal import (
    Buffer,
    CorruptRecordError,
    DiskFullError,
    LabelKey,
    Lane,
    SegmentRun,
    fsync_and_close,
)

log = logging.getLogger("giamsat.remote_write")
# httpx logs every request at INFO; one line per push would drown the agent's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

Sample = tuple[dict[str, str], float, int]
"""(labels including ``__name__``, value, timestamp in milliseconds)."""


def samples_from_result(result: JobResult, extra_labels: Mapping[str, str] | None = None) -> list[Sample]:
    """Flatten a job result into remote-write samples, labelled as the exporter serves them.

    Counters come out as ``<name>_total``, info as ``<name>_info``, histograms as ``_bucket``/``_sum``/
    ``_count`` (prometheus_client names samples so already); ``_created`` samples are left out, as the
    text exposition Prometheus scrapes does not carry them either. ``site``/``target`` and
    ``extra_labels`` never override a label the collector set.
    """
    base_ts = int(result.timestamp * 1000)
    add: dict[str, str] = {}
    if result.site:
        add["site"] = result.site
    if result.target:
        add["target"] = result.target
    if extra_labels:
        for k, v in extra_labels.items():
            add.setdefault(k, v)
    out: list[Sample] = []
    for fam in result.families:
        for s in fam.samples:
            if s.name.endswith("_created") and fam.type in ("counter", "histogram", "summary"):
                continue
            labels = {"__name__": s.name}
            labels.update(s.labels)
            for k, v in add.items():
                labels.setdefault(k, v)
            ts = base_ts if s.timestamp is None else int(float(s.timestamp) * 1000)
            out.append((labels, float(s.value), ts))
    return out


class _TokenBucket:
    """Bandwidth budget in bytes/s shared by the lanes; the live lane goes first."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.burst = rate or 0.0  # one second's worth; a bigger request is paid for afterwards
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.live_waiting = 0

    def _refill(self) -> None:
        now = time.monotonic()
        assert self.rate is not None
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, n: int, live: bool) -> None:
        if self.rate is None:
            return
        need = min(float(n), self.burst)
        if live:
            self.live_waiting += 1
        try:
            while True:
                self._refill()
                if self.tokens >= need and (live or not self.live_waiting):
                    self.tokens -= n  # may go negative: a big request is paid for afterwards
                    return
                await asyncio.sleep(max(0.01, (need - self.tokens) / self.rate))
        finally:
            if live:
                self.live_waiting -= 1


class _Stats:
    def __init__(self) -> None:
        self.appended = 0
        self.sent = 0
        self.dropped: dict[str, int] = {}
        self.retries = 0
        self.sent_bytes = 0
        self.requests = 0
        self.duplicate_batches = 0
        self.last_success = 0.0


class RemoteWriter:
    """Buffers samples for one receiver and delivers them; ``append`` is synchronous and cheap."""

    def __init__(self, settings: RemoteWriteSettings, state_dir: Path) -> None:
        self.settings = settings
        self.buffer = Buffer(
            state_dir / "remote_write" / settings.name,
            max_bytes=int(settings.buffer.max_size),
            segment_bytes=int(settings.buffer.segment_size),
            max_age=settings.max_sample_age,
        )
        self.stats = _Stats()
        self._bucket = _TokenBucket(float(settings.bandwidth_limit) if settings.bandwidth_limit else None)
        self._data = asyncio.Event()
        self._backfill_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._persist_lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None
        self._resending: dict[str, bool] = {"live": False, "backfill": False}
        self._failing = False
        self._disk_full = False
        self._write_failing = False
        self._rejected_batches = 0  # in a row, since the last accepted batch
        self._cursor_unsynced = False
        self._cursor_failing = False
        self._ext: tuple[tuple[str, str], ...] = tuple(sorted(settings.external_labels.items()))
        self._started = False
        # httpcore uses sni_hostname both for SNI and for checking the certificate's name.
        self._extensions: dict[str, Any] = (
            {"sni_hostname": settings.tls.server_name} if settings.tls.server_name else {}
        )

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the buffer and start delivering; on any failure nothing stays open (buffer lock included).

        The TLS context and HTTP client are built first: a mistyped ``tls.ca_file`` must fail before the
        buffer directory is locked, or the writer it was to replace could not take it back.
        """
        if self._started or self._tasks or self._client is not None:
            raise RuntimeError(f"remote write {self.settings.name!r} already started")
        opening: asyncio.Future[None] | None = None
        try:
            verify = self._ssl_context()
            self._client = httpx.AsyncClient(
                timeout=self.settings.remote_timeout,
                verify=verify,
                limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
                headers={
                    **self.settings.headers,
                    "Content-Encoding": pb.CONTENT_ENCODING,
                    "Content-Type": pb.CONTENT_TYPE,
                    "User-Agent": f"giamsat/{__version__}",
                    "X-Prometheus-Remote-Write-Version": pb.REMOTE_WRITE_VERSION,
                },
                auth=self._auth(),
            )
            opening = asyncio.ensure_future(asyncio.to_thread(self.buffer.open))
            await asyncio.shield(opening)
            self._started = True
            self._begin()
        except BaseException:
            if opening is not None and not opening.done():
                # Cancelled while the thread scans: let it finish so close() releases what it opened.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(opening)
            await self.close()
            raise

    def _begin(self) -> None:
        b = self.buffer
        # Samples found in the buffer count as appended, so appended = sent + dropped + pending holds.
        self.stats.appended = b.live.pending + (b.backfill.pending if b.backfill else 0)
        self._resending["live"] = b.live.inflight is not None
        self._resending["backfill"] = b.backfill is not None and b.backfill.inflight is not None
        if b.repaired_bytes:
            log.warning("remote-write buffer tail repaired", extra={"remote": self.settings.name})
        if b.live.pending:
            self._data.set()
        if b.backfill is not None:
            self._backfill_ready.set()
        loop_name = f"remote-write-{self.settings.name}"
        self._tasks = [
            asyncio.create_task(self._guarded("live", self._live_loop), name=f"{loop_name}-live"),
            asyncio.create_task(self._guarded("backfill", self._backfill_loop), name=f"{loop_name}-backfill"),
            asyncio.create_task(
                self._guarded("housekeeping", self._housekeeping_loop), name=f"{loop_name}-sync"
            ),
        ]
        log.info(
            "remote write started",
            extra={"remote": self.settings.name, "url": self.settings.url, "pending": self.stats.appended},
        )

    async def close(self) -> None:
        """Stop delivering and release the buffer; idempotent, and safe after a failed or partial start."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        client, self._client = self._client, None
        try:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        finally:
            self._started = False
            await asyncio.to_thread(self.buffer.close)  # a no-op unless (partly) open

    def _ssl_context(self) -> ssl.SSLContext | bool:
        tls = self.settings.tls
        if not self.settings.url.startswith("https://"):
            return True
        try:
            ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file:
                ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"remote_write {self.settings.name!r}: cannot load tls.ca_file/cert_file/key_file: {exc}"
            ) from None
        if tls.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _auth(self) -> httpx.Auth | None:
        s = self.settings
        if s.basic_auth is not None:
            return httpx.BasicAuth(s.basic_auth.username, secret_value(s.basic_auth.password) or "")
        if s.bearer_token is not None:
            return _BearerAuth(secret_value(s.bearer_token) or "")
        return None

    # ---- appending (hot path) --------------------------------------------------------------------

    def append(self, samples: Iterable[Sample]) -> int:
        """Store samples for delivery; never raises for a full disk (drops and counts instead)."""
        ext = self._ext
        # Keyed by series: a series twice in one result would make Prometheus refuse the whole request
        # ("duplicate sample for timestamp"), so the last value wins, as in the exposition.
        by_key: dict[LabelKey, tuple[float, int]] = {}
        for labels, value, ts in samples:
            if ext:
                labels = {**dict(ext), **labels}
            by_key[tuple(sorted(labels.items()))] = (value, ts)
        if not by_key:
            return 0
        rows = [(k, v, t) for k, (v, t) in by_key.items()]
        n = len(rows)
        self.stats.appended += n
        try:
            self.buffer.append(rows)
        except DiskFullError:
            self._drop("disk_full", n)
            if not self._disk_full:
                self._disk_full = True
                log.error(
                    "remote-write buffer: disk full, dropping new samples until space is free",
                    extra={"remote": self.settings.name, "dir": str(self.buffer.dir)},
                )
            return 0
        except Exception as exc:
            self._drop("write_error", n)
            if not self._write_failing:
                self._write_failing = True
                log.error(
                    "remote-write buffer: write failed, samples dropped until a write succeeds",
                    extra={"remote": self.settings.name, "error": repr(exc)},
                )
            return 0
        if self._write_failing:
            self._write_failing = False
            log.info("remote-write buffer: writing again", extra={"remote": self.settings.name})
        # A small result may fit where a big one did not: the disk counts as free again only once a
        # whole segment fits, or the log would flap between error and info on every append.
        if self._disk_full and self._room_for_a_segment():
            self._disk_full = False
            log.info(
                "remote-write buffer: writing again after disk full", extra={"remote": self.settings.name}
            )
        self._data.set()
        return n

    def _room_for_a_segment(self) -> bool:
        try:
            st = os.statvfs(self.buffer.dir)
        except OSError:
            return True
        return st.f_bavail * st.f_frsize >= self.buffer.segment_bytes

    def note_dropped(self, reason: str, n: int) -> None:
        """Count ``n`` samples that never reached this writer (e.g. lost in a reload) as appended and
        dropped, so the self metrics show them and appended = sent + dropped + pending still holds."""
        if n > 0:
            self.stats.appended += n
            self._drop(reason, n)

    def _drop(self, reason: str, n: int) -> None:
        if n:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + n

    # ---- delivery --------------------------------------------------------------------------------

    async def _guarded(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a delivery loop alive: an unexpected error is logged and the loop restarts after a pause."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "remote write: %s loop failed; restarting", what, extra={"remote": self.settings.name}
                )
                await asyncio.sleep(1.0)

    def _next_batch(self, lane: Lane) -> SegmentRun | None:
        try:
            return self.buffer.next_batch(lane, self.settings.max_samples_per_send)
        except CorruptRecordError as exc:
            n = self.buffer.skip_segment(lane)
            log.error(
                "remote-write buffer: corrupt record, rest of segment dropped",
                extra={"remote": self.settings.name, "error": str(exc), "samples": n},
            )
            return self._next_batch(lane)

    async def _live_loop(self) -> None:
        s = self.settings
        while True:
            await self._data.wait()
            self._data.clear()
            lane = self.buffer.live
            # Let a small batch fill up for up to batch_send_deadline (a full one goes at once).
            deadline = time.monotonic() + s.batch_send_deadline
            while lane.pending < s.max_samples_per_send and lane.inflight is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._data.wait(), left)
                self._data.clear()
            while True:
                self._maybe_split()
                batch = self._next_batch(lane)
                if batch is None:
                    break
                await self._deliver(lane, batch)
            self._truncate()

    def _maybe_split(self) -> None:
        s = self.settings
        b = self.buffer
        if not s.backfill_lane or b.backfill is not None or b.live.inflight is not None:
            return
        if b.live.pending <= s.max_samples_per_send:
            return
        oldest = b.oldest_pending_ts()
        if oldest is None or time.time() * 1000 - oldest < s.backfill_after * 1000:
            return
        if b.split_backfill():
            log.info(
                "remote write: backlog moved to the backfill lane, new samples go first",
                extra={"remote": s.name, "backlog": b.backfill.pending if b.backfill else 0},
            )
            self._backfill_ready.set()

    async def _backfill_loop(self) -> None:
        while True:
            await self._backfill_ready.wait()
            self._backfill_ready.clear()
            while (lane := self.buffer.backfill) is not None:
                batch = self._next_batch(lane)
                if batch is None:
                    break
                await self._deliver(lane, batch)
                self._truncate()
            self._truncate()
            await self._persist()

    async def _deliver(self, lane: Lane, batch: SegmentRun) -> None:
        """Send one batch until it is acknowledged or dropped; persists the in-flight end first."""
        s = self.settings
        now_ms = int(time.time() * 1000)
        too_old = 0
        series: list[tuple[bytes, list[tuple[int, float]]]] = []
        if s.max_sample_age is not None and batch.min_ts < now_ms - s.max_sample_age * 1000:
            limit = now_ms - int(s.max_sample_age * 1000)
            for block, samples in batch.series.items():
                keep = [x for x in samples if x[0] >= limit]
                too_old += len(samples) - len(keep)
                if keep:
                    series.append((block, keep))
        else:
            series = list(batch.series.items())
        if not series:
            self._finish(lane, batch, sent=0, dropped={"too_old": too_old})
            return
        body = pb.snappy_compress(pb.encode_write_request(series))
        self.buffer.mark_inflight(lane, batch)
        await self._persist()
        attempt = 0
        is_live = lane.name == "live"
        while True:
            await self._bucket.take(len(body), is_live)
            retry_after: float | None = None
            sending = _SendTrace()
            try:
                assert self._client is not None
                # httpx's timeout bounds each read and write, not the request: a receiver (or proxy)
                # trickling its answer would hold the POST open for ever. remote_timeout bounds it all.
                async with asyncio.timeout(s.remote_timeout):
                    resp = await self._client.post(
                        s.url, content=body, extensions={**self._extensions, "trace": sending}
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self._note_failure(f"connect: {type(exc).__name__}")
            except TimeoutError:
                # Only a request whose headers went out can have reached the receiver; a timeout while
                # connecting is a connect failure (so a 400 "out of order" later is not taken as stored).
                if sending.started:
                    self._resending[lane.name] = True
                    self._note_failure("transport: no complete answer within remote_timeout")
                else:
                    self._note_failure("connect: no connection within remote_timeout")
            except httpx.HTTPError as exc:
                # The request may have reached the receiver: the re-send could find it stored.
                self._resending[lane.name] = True
                self._note_failure(f"transport: {type(exc).__name__}")
            else:
                self.stats.requests += 1
                code = resp.status_code
                if 200 <= code < 300:
                    self.stats.sent_bytes += len(body)
                    self._resending[lane.name] = False
                    self._finish(lane, batch, sent=batch.n_samples - too_old, dropped={"too_old": too_old})
                    self._note_success()
                    self._note_accepted()
                    return
                # The receiver's words are outside text: a proxy may quote our Authorization header.
                # Masked before being cut short, so no piece of a secret survives the cut.
                text = redact(resp.text[:4096])[:512]
                low = text.lower()
                if code == 429 or code >= 500:
                    if "too old" in low or "out of bounds" in low:
                        self._finish(lane, batch, sent=0, dropped={"too_old": batch.n_samples})
                        log.warning(
                            "remote write: receiver refuses samples as too old; dropped (lower max_sample_age)",
                            extra={"remote": s.name, "status": code, "samples": batch.n_samples},
                        )
                        return
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    self._note_failure(f"http {code}: {text[:120]}")
                elif self._resending[lane.name] and (
                    "out of order sample" in low or "duplicate sample" in low
                ):
                    # A re-send of a batch the receiver already committed (Prometheus rolls a request back
                    # as a whole, so a batch is stored entirely or not at all): it is delivered.
                    self.stats.duplicate_batches += 1
                    self._finish(lane, batch, sent=batch.n_samples - too_old, dropped={"too_old": too_old})
                    self._note_success()
                    return
                else:
                    self.stats.sent_bytes += len(body)
                    reason = "too_old" if ("too old" in low or "out of bounds" in low) else "rejected"
                    drop = {"too_old": too_old}
                    drop[reason] = drop.get(reason, 0) + batch.n_samples - too_old
                    self._finish(lane, batch, sent=0, dropped=drop)
                    self._note_rejected(code, batch.n_samples, text)
                    self._note_success()
                    return
            attempt += 1
            self.stats.retries += 1
            backoff = min(s.max_backoff, s.min_backoff * (2 ** min(attempt, 30)))
            delay = random.uniform(backoff / 2, backoff)
            if retry_after is not None:
                delay = max(delay, min(retry_after, s.max_backoff))
            await asyncio.sleep(delay)

    def _finish(self, lane: Lane, batch: SegmentRun, sent: int, dropped: Mapping[str, int]) -> None:
        if self.buffer.ack(lane, batch):
            self.stats.sent += sent
            for reason, n in dropped.items():
                self._drop(reason, n)

    def _note_failure(self, what: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "remote write failing, buffering and retrying",
                extra={"remote": self.settings.name, "error": what, "pending": self.pending},
            )

    def _note_rejected(self, code: int, samples: int, text: str) -> None:
        """A batch refused for good (4xx): logged when refusals start, then counted until one is
        accepted (``dropped`` carries every sample), not one line per batch."""
        self._rejected_batches += 1
        if self._rejected_batches == 1:
            log.warning(
                "remote write: receiver rejects batches; dropped, not retried (logged again when one is accepted)",
                extra={"remote": self.settings.name, "status": code, "samples": samples, "body": text[:200]},
            )

    def _note_accepted(self) -> None:
        if self._rejected_batches:
            log.info(
                "remote write: receiver accepts batches again",
                extra={"remote": self.settings.name, "rejected_batches": self._rejected_batches},
            )
            self._rejected_batches = 0

    def _note_success(self) -> None:
        self.stats.last_success = time.time()
        if self._failing:
            self._failing = False
            log.info(
                "remote write recovered",
                extra={"remote": self.settings.name, "pending": self.pending, "retries": self.stats.retries},
            )

    async def _persist(self, fsync: bool = False) -> None:
        async with self._persist_lock:
            if not self.buffer.cursor_dirty and not (fsync and self._cursor_unsynced):
                return
            data = self.buffer.cursor_state()
            try:
                await asyncio.to_thread(self.buffer.write_cursor, data, fsync)
            except OSError as exc:
                if not self._cursor_failing:
                    self._cursor_failing = True
                    log.warning(
                        "remote-write buffer: cannot save acknowledged positions (will retry)",
                        extra={"remote": self.settings.name, "error": str(exc)},
                    )
                return
            if self._cursor_failing:
                self._cursor_failing = False
                log.info(
                    "remote-write buffer: acknowledged positions saved again",
                    extra={"remote": self.settings.name},
                )
            self._cursor_unsynced = not fsync

    def _truncate(self) -> None:
        self.buffer.truncate_acknowledged()

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.buffer.fsync_interval)
            try:
                self.buffer.enforce_age(int(time.time() * 1000))
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    log.warning("remote-write buffer: age bound failed", extra={"error": str(exc)})
            fd = self.buffer.sync_handle()
            if fd is not None:
                try:
                    await asyncio.to_thread(fsync_and_close, fd)
                except OSError as exc:
                    log.warning("remote-write buffer: fsync failed", extra={"error": str(exc)})
            await self._persist(fsync=True)

    # ---- self metrics ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        b = self.buffer
        return b.live.pending + (b.backfill.pending if b.backfill is not None else 0)

    def dropped(self) -> dict[str, int]:
        out = dict(self.stats.dropped)
        for reason, n in self.buffer.drops.items():
            out[reason] = out.get(reason, 0) + n
        return out

    def collect(self) -> list[Metric]:
        name = self.settings.name
        lab = ["remote"]
        st = self.stats

        def counter(metric: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(metric, doc, labels=lab)
            c.add_metric([name], value)
            return c

        def gauge(metric: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(metric, doc, labels=lab)
            g.add_metric([name], value)
            return g

        dropped = CounterMetricFamily(
            "giamsat_remote_write_samples_dropped",
            "Samples given up on, by reason (buffer_full, too_old, rejected, disk_full, write_error, reload).",
            labels=["remote", "reason"],
        )
        drops = self.dropped()
        for reason in sorted({"buffer_full", "too_old", "rejected", "disk_full", *drops}):
            dropped.add_metric([name, reason], drops.get(reason, 0))
        oldest = self.buffer.oldest_pending_ts() if self._started else None
        age = max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0
        return [
            counter(
                "giamsat_remote_write_samples_appended",
                "Samples handed to the sender, including those found in the buffer at start.",
                st.appended,
            ),
            counter("giamsat_remote_write_samples_sent", "Samples acknowledged by the receiver.", st.sent),
            dropped,
            gauge(
                "giamsat_remote_write_samples_pending",
                "Samples in the buffer not yet acknowledged (appended = sent + dropped + pending).",
                self.pending,
            ),
            gauge(
                "giamsat_remote_write_oldest_pending_sample_age_seconds",
                "Age of the oldest sample still waiting to be sent (0 when none).",
                age,
            ),
            gauge("giamsat_remote_write_buffer_bytes", "Size of the on-disk buffer.", self.buffer.size_bytes),
            counter(
                "giamsat_remote_write_retries", "Requests retried (network error, 5xx or 429).", st.retries
            ),
            counter("giamsat_remote_write_sent_bytes", "Compressed request bytes sent.", st.sent_bytes),
            counter(
                "giamsat_remote_write_resent_stored_batches",
                "Re-sent batches the receiver reported as already stored (counted as sent).",
                st.duplicate_batches,
            ),
            gauge(
                "giamsat_remote_write_last_send_success_timestamp_seconds",
                "When the receiver last answered a request (0: never).",
                st.last_success,
            ),
            gauge(
                "giamsat_remote_write_backfill_active",
                "1 while a backlog is delivered on the backfill lane.",
                1.0 if self.buffer.backfill is not None else 0.0,
            ),
        ]


class _SendTrace:
    """httpcore ``trace`` extension: notes whether the request's headers started going out."""

    def __init__(self) -> None:
        self.started = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_headers.started"):
            self.started = True


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._header
        yield request


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


class RemoteWriteSet:
    """All configured receivers behind one object: what the agent core starts, feeds and scrapes.

    ``on_result`` flattens each job result once and appends it to every receiver's buffer; ``collect``
    merges the writers' self metrics into one family per name (one HELP/TYPE block each).
    """

    def __init__(self, settings: Sequence[RemoteWriteSettings], state_dir: Path) -> None:
        names = [s.name for s in settings]
        if len(set(names)) != len(names):
            raise ValueError("remote_write names must be unique (each owns a buffer directory)")
        self.writers = [RemoteWriter(s, state_dir) for s in settings]

    async def start(self) -> None:
        started: list[RemoteWriter] = []
        try:
            for w in self.writers:
                await w.start()
                started.append(w)
        except BaseException:
            for w in started:
                await w.close()
            raise

    async def close(self) -> None:
        for w in self.writers:
            await w.close()

    def on_result(self, result: JobResult) -> None:
        if not self.writers or not result.families:
            return
        samples = samples_from_result(result)
        for w in self.writers:
            w.append(samples)

    def note_dropped(self, reason: str, n: int) -> None:
        for w in self.writers:
            w.note_dropped(reason, n)

    def collect(self) -> list[Metric]:
        merged: dict[str, Metric] = {}
        for w in self.writers:
            for fam in w.collect():
                if fam.name in merged:
                    merged[fam.name].samples.extend(fam.samples)
                else:
                    merged[fam.name] = fam
        return list(merged.values())


class ResultHold:
    """Holds job results while the agent swaps one ``RemoteWriteSet`` for another, so none is lost.

    A buffer directory admits one writer at a time: between closing the old set and starting the new
    one (which re-scans the buffer, longest during an outage, when the backlog is big) no writer can
    take results. The lifecycle registers ``on_result`` as a result listener for that window and, in
    the same event-loop step as it attaches the new set, calls ``release_to``: held results go first,
    in order. Beyond ``max_samples`` results are counted, not held, and reported by the new set as
    dropped with reason ``reload``.
    """

    def __init__(self, max_samples: int = 200_000) -> None:
        self.max_samples = max_samples
        self.held: list[JobResult] = []
        self.held_samples = 0
        self.dropped_samples = 0

    def on_result(self, result: JobResult) -> None:
        n = sum(len(f.samples) for f in result.families)
        if not n:
            return
        if self.held_samples + n > self.max_samples:
            self.dropped_samples += len(samples_from_result(result))
            return
        self.held.append(result)
        self.held_samples += n

    def release_to(self, rws: RemoteWriteSet | None) -> None:
        """Feed the held results to ``rws`` (None: remote write is gone, they are discarded)."""
        held, self.held = self.held, []
        if rws is not None:
            for result in held:
                rws.on_result(result)
            rws.note_dropped("reload", self.dropped_samples)
        self.held_samples = self.dropped_samples = 0
