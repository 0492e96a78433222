"""Local delivery step of the queue role (ring 1): one queued recipient into its mailboxes.

Owns the order of a local delivery: the quota check, the filter hook (may choose a folder or
discard), `Store.deliver_batch` with the recipients' results recorded in the store's own
transaction (so a crash can neither lose nor duplicate a copy), then the auto-reply hook. The
runner hands several recipients at once (`deliver_batch`, group commit: one transaction for
the recipients of all the messages waiting), and may ask for the messages to leave the queue
right after it (one more transaction for the whole batch). Over quota is a temporary failure
until the message's lifetime ends (then the runner bounces it).

Hook points for a later issue (filters, vacation/auto-reply): `DeliveryHooks.filter` and
`DeliveryHooks.after_delivery`. The defaults do nothing.

Standards: RFC 3463 (4.2.2 mailbox full, 5.1.1 no such mailbox, 4.3.0 internal error),
RFC 3834 (auto-replies are sent by the hook, through the spool, never for null senders).
Security: message bytes are handed to the store untouched; the filter hook sees them read-only.
Durability: the commit of `Store.deliver_batch` is the delivery point and records the results;
the finished queue entries of a batch are removed in one more transaction, after the hooks.
Fault points: `queue.local.before_commit`, `queue.local.before_finish`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from courriel import durable
from courriel.models import RecipientState
from courriel.queue import spool
from courriel.queue.spool import QueuedMessage, QueuedRecipient
from courriel.store import NoSuchMailbox, Store, StoreError

log = logging.getLogger("courriel.queue.local")


@dataclass(frozen=True)
class FilterDecision:
    """What a delivery filter decided for one mailbox copy."""

    folder: str | None = None  # None: the recipient's folder (INBOX unless set at RCPT time)
    discard: bool = False
    flags: tuple[str, ...] = ()  # system flags and keywords set on the stored copy


@dataclass
class DeliveryHooks:
    """Extension points run at delivery time (filters, auto-reply); the defaults do nothing."""

    filter: Callable[[QueuedMessage, QueuedRecipient, int], FilterDecision] = field(
        default=lambda message, recipient, mailbox_id: FilterDecision())
    after_delivery: Callable[[QueuedMessage, QueuedRecipient, int], None] = field(
        default=lambda message, recipient, mailbox_id: None)


@dataclass(frozen=True)
class LocalResult:
    state: str  # RecipientState: delivered | deferred | bounced
    status: str  # RFC 3463 enhanced status code
    reply: str  # text for last_reply and DSNs
    finished: bool = False  # the message left the queue after the delivery


@dataclass(frozen=True)
class LocalRequest:
    """One queued recipient to deliver into its mailboxes."""

    message: QueuedMessage
    recipient: QueuedRecipient
    mailbox_ids: tuple[int, ...]
    # Also end the message's life in the queue after the delivery when every recipient is final
    # by then (`spool.finish_many` checks). The runner asks only when no notice is due.
    finish: bool = False


DELIVERED = LocalResult(RecipientState.DELIVERED, "2.0.0", "250 2.0.0 delivered")


class LocalDelivery:
    """Delivers queued recipients into mailboxes (called from a worker thread)."""

    def __init__(self, store: Store, hooks: DeliveryHooks | None = None):
        self.store = store
        self.hooks = hooks or DeliveryHooks()

    def deliver(self, message: QueuedMessage, recipient: QueuedRecipient, mailbox_ids: tuple[int, ...]) -> LocalResult:
        """Deliver one recipient's copy into each of `mailbox_ids` (see `deliver_batch`)."""
        return self.deliver_batch([LocalRequest(message, recipient, tuple(mailbox_ids))])[0]

    def deliver_batch(self, requests: Sequence[LocalRequest]) -> list[LocalResult]:
        """Deliver several recipients (of one or many messages) in ONE store transaction.

        The copies of every request that passed its quota check and filters and their "delivered"
        results commit together, so a crash can neither lose nor duplicate a copy; then the
        after-delivery hooks run and the messages that end leave the queue together. When that
        transaction fails, each request is tried alone (a mailbox deleted meanwhile bounces only
        its own recipient). Deferred and bounced results are returned for the runner to record
        after it has spooled any notice (so a crash cannot lose a bounce)."""
        results: list[LocalResult | None] = [None] * len(requests)
        planned: list[tuple[LocalRequest, list[tuple[int, FilterDecision]]]] = []
        usages = self.store.quota_usages({m for request in requests for m in request.mailbox_ids})
        for index, request in enumerate(requests):
            try:
                for mailbox_id in request.mailbox_ids:
                    usage = usages.get(mailbox_id)
                    if usage is None:
                        raise NoSuchMailbox(f"no mailbox {mailbox_id}")
                    if usage.would_exceed(request.message.size, 1):  # RFC 9208 §5.1 STORAGE, §5.2 MESSAGE
                        results[index] = LocalResult(RecipientState.DEFERRED, "4.2.2", "452 4.2.2 mailbox full")
                        break
                else:
                    planned.append((request, [(mailbox_id, self.hooks.filter(request.message, request.recipient,
                                                                             mailbox_id))
                                              for mailbox_id in request.mailbox_ids]))
            except StoreError as exc:
                results[index] = self._failure(request, exc)
        outcome: dict[int, LocalResult] = {}
        try:
            outcome.update(self._commit(planned))
        except StoreError as exc:
            if len(planned) == 1:
                outcome[id(planned[0][0])] = self._failure(planned[0][0], exc)
            else:
                for one in planned:
                    try:
                        outcome.update(self._commit([one]))
                    except StoreError as exc_one:
                        outcome[id(one[0])] = self._failure(one[0], exc_one)
        for index, request in enumerate(requests):
            if results[index] is None:
                results[index] = outcome[id(request)]
        return results

    def _commit(self, planned: list[tuple[LocalRequest, list[tuple[int, FilterDecision]]]]) -> dict[int, LocalResult]:
        """One transaction: every copy, every "delivered" result, the messages that end; then the
        after-delivery hooks. Returns the results by id(request)."""
        if not planned:
            return {}
        copies = [(mailbox_id, request.message.blob_id, decision.folder or request.recipient.folder, decision.flags)
                  for request, decisions in planned for mailbox_id, decision in decisions if not decision.discard]

        def record(session) -> None:
            spool.record_delivered(session, [request.recipient.id for request, _ in planned], DELIVERED.reply)
            for _ in planned:  # crash tests: a kill here rolls back the copies and the results together
                durable.fault_point("queue.local.before_commit")

        self.store.deliver_batch(copies, in_transaction=record)
        for request, decisions in planned:
            for mailbox_id, decision in decisions:
                if not decision.discard:
                    self.hooks.after_delivery(request.message, request.recipient, mailbox_id)
        # The messages leave the queue after the hooks (an auto-reply is in the queue before the
        # message that caused it has left), in one transaction for the batch. A crash or an error
        # here leaves delivered recipients only: the runner finishes those messages later.
        finished: set[str] = set()
        ending = [request.message.id for request, _ in planned if request.finish]
        if ending:
            try:
                durable.fault_point("queue.local.before_finish")
                finished = spool.finish_many(self.store.db, ending)
            except Exception:
                log.exception("ending %d delivered message(s) failed; the runner retries", len(ending))
        return {id(request): replace(DELIVERED, finished=request.finish and request.message.id in finished)
                for request, _ in planned}

    def _failure(self, request: LocalRequest, exc: StoreError) -> LocalResult:
        if isinstance(exc, NoSuchMailbox):
            return LocalResult(RecipientState.BOUNCED, "5.1.1", "550 5.1.1 mailbox no longer exists")
        log.warning("local delivery of %s to mailbox ids %s failed: %s", request.message.id, request.mailbox_ids, exc)
        return LocalResult(RecipientState.DEFERRED, "4.3.0", "451 4.3.0 mailbox store error")
