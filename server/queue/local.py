"""Local delivery step of the queue role (ring 1): one queued recipient into its mailboxes.

Owns the order of a local delivery: the filter hook (may choose a folder or discard), the quota
check, `Store.deliver` with the recipient's result recorded in the store's own transaction (so
a crash can neither lose nor duplicate the copy), then the auto-reply hook. Over quota is a
temporary failure until the message's lifetime ends (then the runner bounces it).

Hook points for a later issue (filters, vacation/auto-reply): `DeliveryHooks.filter` and
`DeliveryHooks.after_delivery`. The defaults do nothing.

Standards: RFC 3463 (4.2.2 mailbox full, 5.1.1 no such mailbox, 4.3.0 internal error),
RFC 3834 (auto-replies are sent by the hook, through the spool, never for null senders).
Security: message bytes are handed to the store untouched; the filter hook sees them read-only.
Durability: the commit of `Store.deliver` is the delivery point and records the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

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


class LocalDelivery:
    """Delivers queued recipients into mailboxes (called from a worker thread)."""

    def __init__(self, store: Store, hooks: DeliveryHooks | None = None):
        self.store = store
        self.hooks = hooks or DeliveryHooks()

    def deliver(self, message: QueuedMessage, recipient: QueuedRecipient, mailbox_ids: tuple[int, ...]) -> LocalResult:
        """Deliver one recipient's copy into each of `mailbox_ids`.

        A "delivered" result is recorded durably here (in the last store transaction when a copy
        was stored); deferred and bounced results are returned for the runner to record after it
        has spooled any notice (so a crash cannot lose a bounce)."""
        try:
            for mailbox_id in mailbox_ids:
                usage = self.store.quota_usage(mailbox_id, only_if_limited=True)
                if usage.would_exceed(message.size, 1):  # RFC 9208 §5.1 STORAGE, §5.2 MESSAGE
                    return LocalResult(RecipientState.DEFERRED, "4.2.2", "452 4.2.2 mailbox full")
            result = LocalResult(RecipientState.DELIVERED, "2.0.0", "250 2.0.0 delivered")
            stored = False
            for index, mailbox_id in enumerate(mailbox_ids):
                decision = self.hooks.filter(message, recipient, mailbox_id)
                last = index == len(mailbox_ids) - 1
                if decision.discard:
                    continue
                record = None
                if last:
                    def record(session, _recipient_id=recipient.id):
                        spool.record_result(session, _recipient_id, result.state, result.reply)
                        # Crash tests: a kill here rolls back the copy and the result together.
                        durable.fault_point("queue.local.before_commit")
                self.store.deliver(mailbox_id, message.blob_id, folder=decision.folder or recipient.folder,
                                   flags=decision.flags, in_transaction=record)
                stored = stored or last
                self.hooks.after_delivery(message, recipient, mailbox_id)
            if not stored:
                spool.record_result(self.store.db, recipient.id, result.state, result.reply)
            return result
        except NoSuchMailbox:
            return LocalResult(RecipientState.BOUNCED, "5.1.1", "550 5.1.1 mailbox no longer exists")
        except StoreError as exc:
            log.warning("local delivery of %s to mailbox ids %s failed: %s", message.id, mailbox_ids, exc)
            return LocalResult(RecipientState.DEFERRED, "4.3.0", "451 4.3.0 mailbox store error")
