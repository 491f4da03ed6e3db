"""Append-only audit events with a hash chain per case.

Each event's `hash` is the sha256 of a canonical JSON of the event together with
the previous event's hash, so editing, reordering, deleting or inserting an event
breaks the chain at that point.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import AuditChain, AuditEvent

GENESIS = "0" * 64
SYSTEM_CHAIN = "system"


def instance_chain(instance_id: int) -> str:
    return f"instance:{instance_id}"


def canonical_time(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_hash(event: AuditEvent | dict[str, Any]) -> str:
    """Return the hash an event must carry, given its fields and `prev_hash`."""
    get = event.get if isinstance(event, dict) else lambda name: getattr(event, name)
    body = {
        "chain": get("chain"),
        "seq": get("seq"),
        "instance_id": get("instance_id"),
        "type": get("type"),
        "at": canonical_time(get("at")),
        "actor": get("actor"),
        "element_id": get("element_id"),
        "task_id": get("task_id"),
        "data": get("data"),
        "prev_hash": get("prev_hash"),
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


class AuditLog:
    """Writes events into the caller's transaction; never commits."""

    def __init__(self, session: Session, *, lock: bool) -> None:
        self.session = session
        self.lock = lock
        self._heads: dict[str, AuditChain] = {}

    def _head(self, chain: str) -> AuditChain:
        head = self._heads.get(chain)
        if head is None:
            query = select(AuditChain).where(AuditChain.chain == chain)
            if self.lock:
                query = query.with_for_update()
            head = self.session.scalars(query).one_or_none()
            if head is None:
                head = AuditChain(chain=chain, last_seq=0, last_hash=GENESIS)
                self.session.add(head)
            self._heads[chain] = head
        return head

    def append(
        self,
        chain: str,
        type: str,
        *,
        at: datetime,
        actor: str,
        instance_id: int | None = None,
        element_id: str | None = None,
        task_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        head = self._head(chain)
        event = AuditEvent(
            chain=chain,
            seq=head.last_seq + 1,
            instance_id=instance_id,
            type=type,
            at=at,
            actor=actor,
            element_id=element_id,
            task_id=task_id,
            data=json.loads(canonical_json(data or {})),
            prev_hash=head.last_hash,
        )
        event.hash = event_hash(event)
        head.last_seq = event.seq
        head.last_hash = event.hash
        self.session.add(event)
        return event


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """Return an event as the API shows it."""
    return {
        "seq": event.seq,
        "instance_id": event.instance_id,
        "type": event.type,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "element_id": event.element_id,
        "task_id": event.task_id,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


@dataclass
class ChainBreak:
    chain: str
    instance_id: int | None
    seq: int
    reason: str


def verify_events(events: Iterable[AuditEvent]) -> Iterator[ChainBreak | None]:
    """Check events ordered by (chain, seq); yield None per good event, a break per bad one."""
    chain, expected_seq, prev = None, 0, GENESIS
    for event in events:
        if event.chain != chain:
            chain, expected_seq, prev = event.chain, 1, GENESIS
        if event.seq != expected_seq:
            yield ChainBreak(chain, event.instance_id, event.seq,
                             f"expected seq {expected_seq}, found {event.seq} (an event was deleted or inserted)")
        elif event.prev_hash != prev:
            yield ChainBreak(chain, event.instance_id, event.seq, "prev_hash does not match the previous event")
        elif event_hash(event) != event.hash:
            yield ChainBreak(chain, event.instance_id, event.seq, "hash does not match the event's content")
        else:
            yield None
        expected_seq = event.seq + 1
        prev = event.hash
