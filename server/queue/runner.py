"""The queue runner: the delivery loop of the queue role (ring 1/2 boundary, asyncio).

Owns the life of a leased message: read its file, route each pending recipient (registry →
`router`), deliver local copies (`local`, in a worker thread), DKIM-sign and hand remote copies
to one `Destination` per domain (MX lookup, one reused connection per destination, at most
`DestinationSlots.limit` connections per domain, the dead-destination cache), record each
recipient's result, spool DSNs, then finish or reschedule the message (`schedule`).

The loop leases due messages, wakes at once on a `queue` hint (`notify`, sent by `spool.accept`
in any process) and otherwise sleeps until the next due message, at most `timer` seconds.

Order of the durable steps, chosen so that a crash never loses mail or a bounce:
- a local copy and its "delivered" result commit in one store transaction (`LocalBatcher`: the
  recipients of all the messages waiting share it, group commit); the messages whose recipients
  are then all delivered and that owe no notice leave the queue in one more transaction for
  the batch, after the auto-reply hooks (a crash in between: the restarted runner finds no
  pending recipient and only removes the entry);
- a remote "relayed" result is recorded right after the peer's 250 (a crash in between sends
  that copy again: the in-flight message may be delivered twice, never zero times);
- a bounce's DSN is spooled before the recipient is recorded as bounced (a crash in between
  sends the DSN again, never zero times); the message leaves the queue last.
Fault points for the crash tests: `queue.remote.after_data`, `queue.local.before_commit`,
`queue.local.before_finish`.

Standards: RFC 5321 §5.1 (MX order, implicit MX; several addresses tried in turn),
§4.5.4.1 (retries), §4.5.5 (null reverse-path for notices), §6.1 (a message is either
delivered or bounced); RFC 7505 §4 (null MX: bounce at once with 5.1.10); RFC 3461/3464
(DSNs); RFC 6376 (DKIM signatures on mail from our domains); RFC 3463 (status codes).
Security: replies, DNS answers and message bytes are untrusted; they are stored as data and
reduced to single lines in DSNs (`dsn.clean_text`). Private keys are never logged.
Durability: through `spool` and `store` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.parser
import email.policy
import email.utils
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from courriel import dkim, durable, metrics, notify, registry
from courriel.blobs import BlobError, BlobStore
from courriel.db import Database
from courriel.dns.resolver import NoData, NXDomain, Resolver, TemporaryFailure
from courriel.models import DkimKey, Domain, RecipientState
from courriel.queue import dsn, router, schedule, spool, stats
from courriel.queue.local import DeliveryHooks, LocalDelivery, LocalRequest, LocalResult
from courriel.queue.spool import Envelope, EnvelopeRecipient, QueuedMessage, QueuedRecipient
from courriel.rules import hooks as rule_hooks
from courriel.smtp.outbound import (
    ConnectFailed,
    OutboundMessage,
    OutboundRecipient,
    OutboundSession,
    SessionLost,
)
from courriel.store import Store

log = logging.getLogger("courriel.queue")

DEFAULT_MAX_IN_FLIGHT = 20  # messages processed at once
MAX_LOCAL_BATCH = 50  # recipients delivered in one store transaction
DEFAULT_IDLE_SECONDS = 2.0  # a destination connection closes after this long without work
DEFAULT_CONNECT_TIMEOUT = 30.0
MAX_TRANSACTIONS_PER_CONNECTION = 100  # then a fresh connection (and a fresh MX choice)
BLOB_COLLECTION_SECONDS = 3600.0
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Attempt:
    """The outcome of one recipient in one attempt."""

    state: str  # RecipientState
    status: str  # RFC 3463
    reply: str  # for last_reply and the DSN's Diagnostic-Code
    remote_mta: str | None = None
    peer_dsn: bool = False  # the next hop carries the NOTIFY request on (no "relayed" notice)
    recorded: bool = False  # already written by the step that produced it
    finished: bool = False  # the message left the queue right after its local delivery


@dataclass
class RemoteJob:
    message: QueuedMessage
    recipients: list[QueuedRecipient]
    outbound: OutboundMessage
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Destination:
    """The mail for one destination domain: a job queue and up to `limit` connection workers."""

    def __init__(self, runner: QueueRunner, domain: str):
        self.runner = runner
        self.domain = domain
        self.jobs: asyncio.Queue[RemoteJob] = asyncio.Queue()
        self.workers = 0

    def submit(self, job: RemoteJob) -> None:
        self.jobs.put_nowait(job)
        self._spawn()

    def _spawn(self) -> None:
        if self.jobs.empty() or self.workers >= max(1, self.jobs.qsize()):
            return
        if not self.runner.slots.acquire(self.domain):
            return
        self.workers += 1
        self.runner.spawn(self._worker())

    async def _worker(self) -> None:
        session: OutboundSession | None = None
        try:
            while True:
                try:
                    job = await asyncio.wait_for(self.jobs.get(), timeout=self.runner.idle_seconds)
                except TimeoutError:
                    break
                try:
                    session, attempts = await self.runner.deliver_remote(self.domain, session, job)
                except Exception as exc:  # never leave a job's future unresolved
                    log.exception("remote delivery to %s failed", self.domain)
                    attempts = {r.id: Attempt(RecipientState.DEFERRED, "4.3.0", f"451 4.3.0 internal error: "
                                              f"{type(exc).__name__}") for r in job.recipients}
                    if session is not None:
                        session.close()
                    session = None
                if not job.future.done():
                    job.future.set_result(attempts)
        finally:
            self.workers -= 1
            self.runner.slots.release(self.domain)
            self._spawn()  # jobs that arrived while this worker was leaving
            if session is not None:
                await session.quit()


class LocalBatcher:
    """Group commit for local delivery: the recipients that wait while a store transaction
    commits go together into the next one (`LocalDelivery.deliver_batch`), at most `limit`
    recipients each. One drain loop does that under load; a recipient that finds nobody waiting
    while the loop is busy takes an express batch of its own at once (at most one at a time), so
    light traffic does not wait behind another message's filters and hooks."""

    def __init__(self, runner: QueueRunner, limit: int = MAX_LOCAL_BATCH):
        self.runner = runner
        self.limit = limit
        self.waiting: list[tuple[LocalRequest, asyncio.Future]] = []
        self.draining = False
        self.express = False

    async def deliver(self, request: LocalRequest) -> LocalResult:
        future = asyncio.get_running_loop().create_future()
        alone = not self.waiting
        self.waiting.append((request, future))
        if not self.draining:
            self.draining = True
            self.runner.spawn(self._drain())
        elif alone and not self.express:
            self.express = True
            self.runner.spawn(self._express())
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                await self._run_batch()
        finally:
            self.draining = False
            if not self.express:
                self._cancel_waiting()

    async def _express(self) -> None:
        try:
            if self.waiting:
                await self._run_batch()
        finally:
            self.express = False
            if self.waiting and not self.draining:  # the loop ended meanwhile (stopped, or done)
                self._cancel_waiting()

    async def _run_batch(self) -> None:
        batch, self.waiting = self.waiting[:self.limit], self.waiting[self.limit:]
        try:
            results = await asyncio.to_thread(self.runner.local.deliver_batch, [r for r, _ in batch])
        except Exception as exc:  # every waiter gets the failure (a deferral), none waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # stopped: the waiters are cancelled too and hand their leases back
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _cancel_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for _, future in waiting:  # only when stopped
            future.cancel()


class QueueRunner:
    def __init__(self, config, db: Database, *, resolver: Resolver | None = None,
                 clock: Callable[[], dt.datetime] | None = None, owner: str | None = None,
                 hooks: DeliveryHooks | None = None, timer: float = schedule.DEFAULT_TIMER_SECONDS,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT):
        self.config = config
        self.db = db
        self.blobs = BlobStore(config.blob_dir, db)
        self.store = Store(db, self.blobs, config.run_dir)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.local = LocalDelivery(self.store, hooks or rule_hooks.delivery_hooks(
            self.store, hostname=config.hostname, run_dir=config.run_dir, clock=self.clock))
        self.local_batch = LocalBatcher(self)
        self.policy = schedule.RetryPolicy.from_config(config)
        self._own_resolver = resolver is None
        self.resolver = resolver or Resolver.from_config(config)
        self.port = int(config.get("queue", "outbound_port"))
        self.hostname = config.hostname
        # Stable per host: a restarted runner takes its own leases back at once.
        self.owner = owner or f"{config.hostname}/{socket.gethostname()}/queue"[:64]
        self.timer = timer
        self.max_in_flight = max_in_flight
        self.idle_seconds = DEFAULT_IDLE_SECONDS
        self.connect_timeout = DEFAULT_CONNECT_TIMEOUT
        self.slots = schedule.DestinationSlots()
        self.dead = schedule.DeadDestinations(ttl=min(schedule.DEFAULT_DEAD_DESTINATION_SECONDS,
                                                      self.policy.retry_min))
        self.destinations: dict[str, Destination] = {}
        self.kick = asyncio.Event()
        self.sleeping = False  # waiting for a hint, the timer or the next due message (for tests and logs)
        self._tasks: set[asyncio.Task] = set()
        self._messages: dict[str, asyncio.Task] = {}

    def reconfigure(self, config) -> None:
        """SIGHUP: the retry schedule, the outbound port, the DNS settings and the other settings
        read per delivery, for the attempts that follow (those in flight finish as they began).
        The host name used in auto-replies and the stable lease owner need a restart."""
        self.config = config
        self.policy = schedule.RetryPolicy.from_config(config)
        if self._own_resolver:
            self.resolver = Resolver.from_config(config)
        self.port = int(config.get("queue", "outbound_port"))
        self.hostname = config.hostname
        self.kick.set()  # a shorter retry schedule may make mail due now

    # ------------------------------------------------------------------ the loop

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then hand back what is in flight."""
        loop = asyncio.get_running_loop()
        released = await asyncio.to_thread(spool.clear_stale_leases, self.db, self.clock(), self.owner)
        if released:
            log.info("took back %d message(s) leased before a restart", released)
        listener = None
        try:
            listener = notify.Listener(self.config.run_dir, topics=[notify.QUEUE])
            listener.attach(loop, lambda hints: self.kick.set())
        except OSError as exc:
            log.warning("no queue hints (%s); rescanning every %.0f s", exc, self.timer)
        collector = self.spawn(self._collect_blobs(stop))
        try:
            while not stop.is_set():
                self.kick.clear()
                leased = await self.lease_once()
                if leased:
                    continue
                await self._sleep(stop)
        finally:
            collector.cancel()
            if listener is not None:
                listener.close()
            await self._stop_in_flight()

    async def _collect_blobs(self, stop: asyncio.Event) -> None:
        """Garbage-collect message files nothing refers to any more, and prune the expunge log
        past its retention (`imap.expunge_log_days`), at start and then hourly."""
        while not stop.is_set():
            try:
                report = await asyncio.to_thread(self.blobs.collect)
                if report.blobs or report.temp_files or report.orphan_files or report.leaked:
                    log.info("blob collection removed %d blob(s), %d temporary and %d orphan file(s)",
                             len(report.blobs), len(report.temp_files), len(report.orphan_files))
            except Exception:
                log.exception("blob collection failed; retrying in an hour")
            try:
                await asyncio.to_thread(self.prune_expunge_log)
            except Exception:
                log.exception("expunge log pruning failed; retrying in an hour")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=BLOB_COLLECTION_SECONDS)

    def prune_expunge_log(self) -> int:
        """RFC 7162 retention: drop expunge entries older than `imap.expunge_log_days` (0: never)."""
        days = float(self.config.get("imap", "expunge_log_days") or 0)
        if days <= 0:
            return 0
        removed = self.store.prune_expunges(dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
        if removed:
            log.info("expunge log: pruned %d entries older than %g days", removed, days)
        return removed

    async def lease_once(self) -> int:
        capacity = self.max_in_flight - len(self._messages)
        if capacity <= 0:
            return 0
        leased = await asyncio.to_thread(spool.lease, self.db, self.owner, capacity, self.clock())
        for message in leased:
            if message.id in self._messages:
                continue  # still ours and in progress past its lease: the lease was just renewed
            task = self.spawn(self.process(message))
            self._messages[message.id] = task
            task.add_done_callback(lambda _t, qid=message.id: self._on_message_done(qid))
        return len(leased)

    def _on_message_done(self, queue_id: str) -> None:
        self._messages.pop(queue_id, None)
        self.kick.set()  # a slot is free: look for more due mail

    async def _sleep(self, stop: asyncio.Event) -> None:
        due = await asyncio.to_thread(stats.next_due, self.db)
        expiry = await asyncio.to_thread(stats.earliest_lease_expiry, self.db)
        candidates = [t for t in (due, expiry) if t is not None]
        wait = schedule.sleep_seconds(self.clock(), min(candidates) if candidates else None, self.timer)
        if len(self._messages) >= self.max_in_flight:
            wait = self.timer
        if wait <= 0:
            await asyncio.sleep(0.05)  # due now but not leased (another runner holds it): yield briefly
            return
        waiters = [asyncio.ensure_future(self.kick.wait()), asyncio.ensure_future(stop.wait())]
        self.sleeping = True
        try:
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.sleeping = False
            for waiter in waiters:
                waiter.cancel()

    async def _stop_in_flight(self) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
        for queue_id in list(self._messages):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(spool.release, self.db, queue_id)

    # ------------------------------------------------------------------ one message

    async def process(self, message: QueuedMessage) -> None:
        try:
            await self._process(message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(spool.release, self.db, message.id)
            raise
        except Exception:
            log.exception("processing queue entry %s failed; retrying later", message.id)
            with contextlib.suppress(Exception):
                failures = message.attempts + 1
                when = schedule.next_attempt(message.received_at, failures, self.clock(), self.policy) \
                    or self.clock() + schedule.retry_delay(failures, self.policy)
                await asyncio.to_thread(spool.reschedule, self.db, message.id, when)

    async def _process(self, message: QueuedMessage) -> None:
        try:
            data = await asyncio.to_thread(self.blobs.read, message.blob_id)
        except (BlobError, OSError) as exc:
            # The file is gone or unreadable: keep the entry for the operator, never retry it.
            log.error("queue entry %s is corrupt (%s); put on hold", message.id, exc)
            await asyncio.to_thread(spool.hold, self.db, message.id)
            return
        pending = list(message.pending_recipients)
        routes = await asyncio.to_thread(self._routes, pending)
        attempts: dict[int, Attempt] = {}
        remote: dict[str, list[QueuedRecipient]] = {}
        local: list[QueuedRecipient] = []
        for rcpt in pending:
            decided = routes[rcpt.id]
            if decided.kind is router.RouteKind.REJECT:
                attempts[rcpt.id] = Attempt(RecipientState.BOUNCED, decided.status or "5.1.1",
                                            f"550 {decided.status} {decided.reason}")
            elif decided.kind is router.RouteKind.REMOTE:
                remote.setdefault(decided.domain, []).append(rcpt)
            else:
                local.append(rcpt)
        if local:
            # The message may leave the queue right after its last local delivery when all
            # its recipients are local and no notice is due if they are delivered (otherwise the
            # notice must be spooled first, in `_finish`).
            finish_there = len(local) == len(pending) and not any(
                dsn.wanted(message.sender, rcpt.notify, dsn.Action.DELIVERED) for rcpt in local)
            delivered = await asyncio.gather(*(
                self._deliver_local(message, rcpt, data, routes[rcpt.id], finish=finish_there and rcpt is local[-1])
                for rcpt in local))
            attempts.update(zip((rcpt.id for rcpt in local), delivered, strict=True))
        if remote:
            outbound_data = await asyncio.to_thread(self._signed, data)
            jobs = []
            for domain, recipients in remote.items():
                job = RemoteJob(message, recipients, self._outbound(message, recipients, outbound_data))
                self._destination(domain).submit(job)
                jobs.append(job)
            for job in jobs:
                attempts.update(await job.future)
        await self._finish(message, data, attempts)

    def _routes(self, recipients: list[QueuedRecipient]) -> dict[int, router.Route]:
        decided = {}
        with self.db.read() as session:
            for rcpt in recipients:
                if rcpt.mailbox_id is not None:
                    decided[rcpt.id] = router.route(rcpt.address, rcpt.mailbox_id, (), None)
                    continue
                found = registry.resolve(session, rcpt.address,
                                         require_verified=self.config.get("domains", "require_verification"))
                if found.outcome is registry.Outcome.REMOTE:
                    decided[rcpt.id] = router.route(rcpt.address, None, (), None)
                elif found.outcome is registry.Outcome.DELIVER:
                    domain = found.address.rpartition("@")[2]
                    decided[rcpt.id] = router.route(rcpt.address, None, (domain,),
                                                    router.Resolution(found.mailbox_ids, found.forwards))
                else:
                    status = found.reason.enhanced_status if found.reason else "5.1.1"
                    decided[rcpt.id] = router.reject(status, found.detail or "no such mailbox here")
        return decided

    async def _deliver_local(self, message: QueuedMessage, rcpt: QueuedRecipient, data: bytes,
                             decided: router.Route, *, finish: bool = False) -> Attempt:
        if decided.kind is router.RouteKind.FORWARD:
            # RFC 5321 §3.9.1: an alias to external addresses re-sends the message to them.
            envelope = Envelope(sender=message.sender, recipients=tuple(
                EnvelopeRecipient(address=a, notify=rcpt.notify, orcpt=rcpt.orcpt) for a in decided.forward_to),
                source="local", body_type=message.body_type, smtputf8=message.smtputf8,
                dsn_ret=message.dsn_ret, dsn_envid=message.dsn_envid)
            forwarded = await asyncio.to_thread(spool.accept, self.db, self.blobs, envelope, data,
                                                run_dir=self.config.run_dir)
            if not decided.mailbox_ids:
                await asyncio.to_thread(spool.record_result, self.db, rcpt.id, RecipientState.DELIVERED,
                                        f"250 2.0.0 forwarded as {forwarded}")
                return Attempt(RecipientState.DELIVERED, "2.0.0", f"250 2.0.0 forwarded as {forwarded}",
                               recorded=True)
        try:
            result = await self.local_batch.deliver(LocalRequest(message, rcpt, decided.mailbox_ids, finish=finish))
        except Exception as exc:
            log.exception("local delivery of %s failed", message.id)
            return Attempt(RecipientState.DEFERRED, "4.3.0", f"451 4.3.0 local delivery failed: {type(exc).__name__}")
        return Attempt(result.state, result.status, result.reply, recorded=result.state == RecipientState.DELIVERED,
                       finished=result.finished)

    # ------------------------------------------------------------------ remote delivery

    def _destination(self, domain: str) -> Destination:
        destination = self.destinations.get(domain)
        if destination is None:
            destination = self.destinations[domain] = Destination(self, domain)
        return destination

    def _outbound(self, message: QueuedMessage, recipients: list[QueuedRecipient], data: bytes) -> OutboundMessage:
        return OutboundMessage(
            sender=message.sender,
            recipients=tuple(OutboundRecipient(r.address, r.notify, r.orcpt) for r in recipients),
            data=data, smtputf8=message.smtputf8,
            eight_bit=(message.body_type or "").upper() in ("8BITMIME", "BINARYMIME") or not data.isascii(),
            ret=message.dsn_ret, envid=message.dsn_envid,
        )

    async def deliver_remote(self, domain: str, session: OutboundSession | None,
                             job: RemoteJob) -> tuple[OutboundSession | None, dict[int, Attempt]]:
        """Send one job over the destination's connection (opened when needed)."""
        def every(state: str, status: str, text: str, mta: str | None = None) -> dict[int, Attempt]:
            return {r.id: Attempt(state, status, text, mta) for r in job.recipients}

        if session is not None and session.transactions >= MAX_TRANSACTIONS_PER_CONNECTION:
            await session.quit()  # like Postfix's smtp_connection_reuse_count_limit
            session = None
        if session is None or not session.usable:
            reason = self.dead.reason(domain, self.clock())
            if reason is not None:
                return None, every(RecipientState.DEFERRED, "4.4.1", reason)
            opened = await self._connect(domain)
            if not isinstance(opened, OutboundSession):
                return None, every(*opened)
            session = opened
        try:
            result = await session.send(job.outbound)
        except SessionLost as exc:
            return None, every(RecipientState.DEFERRED, "4.4.2", f"connection lost: {exc}", session.mx_host)
        attempts = {}
        by_address = {r.address: r for r in job.recipients}
        for address, reply in result.replies.items():
            rcpt = by_address[address]
            mta = None if reply.local else session.mx_host
            text = reply.line() if reply.local else f"{session.peer} ({session.tls_description}) said: {reply.line()}"
            if reply.ok:
                durable.fault_point("queue.remote.after_data")
                await asyncio.to_thread(spool.record_result, self.db, rcpt.id, RecipientState.RELAYED, text)
                attempts[rcpt.id] = Attempt(RecipientState.RELAYED, reply.enhanced_status, text, mta,
                                            peer_dsn=result.peer_dsn, recorded=True)
            elif reply.permanent:
                attempts[rcpt.id] = Attempt(RecipientState.BOUNCED, reply.enhanced_status, text, mta)
            else:
                attempts[rcpt.id] = Attempt(RecipientState.DEFERRED, reply.enhanced_status, text, mta)
        log.info("%s to %s via %s: %s", job.message.id, domain, session.peer,
                 ", ".join(f"{a.state}" for a in attempts.values()))
        return session, attempts

    async def _connect(self, domain: str) -> OutboundSession | tuple[str, str, str]:
        """A session with the first mail exchanger that answers, or (state, status, text)."""
        try:
            exchangers = await self.resolver.mx_async(domain)
        except NXDomain:
            return RecipientState.BOUNCED, "5.1.2", f"domain {domain} does not exist (NXDOMAIN)"
        except NoData:
            return RecipientState.BOUNCED, "5.1.2", f"domain {domain} has no MX or address records"
        except TemporaryFailure as exc:
            return RecipientState.DEFERRED, "4.4.3", f"DNS lookup for {domain} failed: {exc.kind}"
        if exchangers.null:
            # RFC 7505 §4.2: a null MX means the domain accepts no mail: bounce at once.
            return RecipientState.BOUNCED, "5.1.10", f"domain {domain} accepts no mail (null MX, RFC 7505)"
        failures = []
        for exchanger in exchangers.hosts:  # RFC 5321 §5.1: preference order, equals shuffled
            addresses = []
            for lookup in (self.resolver.a_async, self.resolver.aaaa_async):
                with contextlib.suppress(NXDomain, NoData, TemporaryFailure):
                    addresses += await lookup(exchanger.host)
            if not addresses:
                failures.append(f"{exchanger.host}: no address")
            for address in addresses:
                try:
                    session = await OutboundSession.open(exchanger.host, address, self.port, self.hostname,
                                                         timeout=self.connect_timeout)
                except ConnectFailed as exc:
                    failures.append(str(exc))
                    continue
                self.dead.mark_alive(domain)
                return session
        reason = "no mail exchanger answered: " + "; ".join(failures)[:400]
        self.dead.mark_dead(domain, self.clock(), reason)
        return RecipientState.DEFERRED, "4.4.1", reason

    # ------------------------------------------------------------------ DKIM

    def _signed(self, data: bytes) -> bytes:
        """The message with our DKIM signatures when its From domain is one of ours with active keys."""
        domain = from_domain(data)
        if domain is None:
            return data
        with self.db.read() as session:
            rows = session.execute(
                select(DkimKey.selector, DkimKey.algorithm, DkimKey.key_file)
                .join(Domain, Domain.id == DkimKey.domain_id)
                .where(Domain.name == domain, DkimKey.state == "active")
                .order_by(DkimKey.id)
            ).all()
        keys = []
        for row in rows:
            try:
                keys.append(dkim.SigningKey.load(self.config.data_dir / row.key_file, domain, row.selector,
                                                 row.algorithm))
            except dkim.DkimKeyError as exc:
                log.error("DKIM key %s for %s unusable: %s", row.selector, domain, exc)
        if not keys:
            return data
        try:
            return dkim.sign(data, keys)
        except (ValueError, dkim.DkimKeyError) as exc:
            log.error("DKIM signing for %s failed: %s; sending unsigned", domain, exc)
            return data

    # ------------------------------------------------------------------ results, DSNs

    async def _finish(self, message: QueuedMessage, data: bytes, attempts: dict[int, Attempt]) -> None:
        now = self.clock()
        states = {r.id: attempts[r.id].state if r.id in attempts else r.state for r in message.recipients}
        outcome = schedule.outcome(states.values(), message.received_at, now, self.policy)
        if outcome is schedule.Outcome.EXPIRED:
            # RFC 5321 §4.5.4.1: give up; every waiting recipient bounces with its last reply.
            for rcpt in message.recipients:
                if states[rcpt.id] not in schedule.FINAL_RECIPIENT_STATES:
                    previous = attempts.get(rcpt.id)
                    last = previous.reply if previous else (rcpt.last_reply or "no attempt succeeded")
                    attempts[rcpt.id] = Attempt(RecipientState.BOUNCED, "5.4.7",
                                                f"delivery time expired; last reply: {last}",
                                                previous.remote_mta if previous else None)
                    states[rcpt.id] = RecipientState.BOUNCED
        warn = outcome is schedule.Outcome.DEFERRED and schedule.delay_warning_due(
            message.received_at, now, message.delay_notified, self.policy)
        retry_until = schedule.expires_at(message.received_at, self.policy)
        reports = []
        for rcpt in message.recipients:
            attempt = attempts.get(rcpt.id)
            if attempt is None:
                continue
            action = None
            if attempt.state == RecipientState.BOUNCED:
                action = dsn.Action.FAILED
            elif attempt.state == RecipientState.DEFERRED and warn:
                action = dsn.Action.DELAYED
            elif attempt.state == RecipientState.DELIVERED:
                action = dsn.Action.DELIVERED
            elif attempt.state == RecipientState.RELAYED and not attempt.peer_dsn:
                action = dsn.Action.RELAYED  # RFC 3461 §6.2.2: the next hop could not carry the request
            if action is None or not dsn.wanted(message.sender, rcpt.notify, action):
                continue
            reports.append(dsn.RecipientReport(
                final_recipient=rcpt.address, action=action, status=attempt.status,
                original_recipient=rcpt.orcpt, diagnostic=attempt.reply, remote_mta=attempt.remote_mta,
                last_attempt=now, will_retry_until=retry_until if action is dsn.Action.DELAYED else None,
                diagnostic_type="smtp" if attempt.remote_mta or attempt.reply[:1].isdigit() else "x-courriel"))
        if reports:
            await self._send_dsn(message, data, reports, now)
        if warn:
            await asyncio.to_thread(spool.mark_delay_notified, self.db, message.id)
        metrics.delivery_attempts(attempt.state for attempt in attempts.values())
        for rcpt_id, attempt in attempts.items():
            if not attempt.recorded:
                await asyncio.to_thread(spool.record_result, self.db, rcpt_id, attempt.state, attempt.reply, now)
        if all(state in schedule.FINAL_RECIPIENT_STATES for state in states.values()):
            if not any(attempt.finished for attempt in attempts.values()):
                await asyncio.to_thread(spool.finish, self.db, message.id)
            metrics.queue_message_processed("finished")
            return
        metrics.queue_message_processed("rescheduled")
        when = schedule.next_attempt(message.received_at, message.attempts + 1, now, self.policy)
        await asyncio.to_thread(spool.reschedule, self.db, message.id, when or now)

    async def _send_dsn(self, message: QueuedMessage, data: bytes, reports: list[dsn.RecipientReport],
                        now: dt.datetime) -> None:
        report = dsn.Report(
            reporting_mta=self.hostname, original_sender=message.sender, queue_id=message.id,
            arrival_date=message.received_at, recipients=tuple(reports), original=data,
            envid=message.dsn_envid, ret=message.dsn_ret, smtputf8=message.smtputf8)
        composed = dsn.compose(report, now)
        envelope = Envelope(
            sender="",  # RFC 5321 §4.5.5: notices use the null reverse-path
            recipients=(EnvelopeRecipient(address=message.sender),),
            source="dsn", smtputf8=message.smtputf8,
            body_type=None if composed.isascii() else "8BITMIME")
        queue_id = await asyncio.to_thread(spool.accept, self.db, self.blobs, envelope, composed,
                                           run_dir=self.config.run_dir)
        log.info("%s: delivery status notification %s (%s) to the sender", message.id, queue_id,
                 ", ".join(sorted({r.action.value for r in reports})))


def from_domain(data: bytes) -> str | None:
    """The lower-case A-label domain of the message's (first) From address, if any."""
    header = dsn.header_of(data)
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header)
    value = parsed.get("From")
    if not value:
        return None
    addresses = email.utils.getaddresses([str(value)])
    if not addresses or "@" not in addresses[0][1]:
        return None
    return router.destination_domain(addresses[0][1])

