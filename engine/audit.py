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

from sqlalchemy import event as sa_event
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from storage.models import AuditChain, AuditEvent

GENESIS = "0" * 64
SYSTEM_CHAIN = "system"


def instance_chain(instance_id: int) -> str:
    return f"instance:{instance_id}"


def canonical_time(at: datetime) -> str:
    if at.utcoffset():
        at = at.astimezone(timezone.utc)
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}." \
           f"{at.microsecond:06d}Z"


_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces, text as is: one spelling per value."""
    return _canonical.encode(value)


HASHED_FIELDS = ("chain", "seq", "instance_id", "type", "at", "actor", "element_id", "task_id", "data", "prev_hash")


def event_hash(event: Any) -> str:
    """Return the hash an event must carry, given its fields and `prev_hash` (a model, row or dict)."""
    values = event if isinstance(event, dict) else {name: getattr(event, name) for name in HASHED_FIELDS}
    body = {name: values[name] for name in HASHED_FIELDS}
    body["at"] = canonical_time(body["at"])
    return hashlib.sha256(_canonical.encode(body).encode("utf-8")).hexdigest()


class AuditLog:
    """Writes events into the caller's transaction; never commits.

    `deferred=True` keeps appended events (their seq and hash already fixed)
    until `write()` puts them into the session with their chains' new heads:
    a step that must flush mid-way (to learn new task ids) then inserts its
    events and updates each head once. A deferred log refuses to let its
    transaction commit with events still unwritten.
    """

    def __init__(self, session: Session, *, lock: bool, deferred: bool = False) -> None:
        self.session = session
        self.lock = lock
        self.deferred = deferred
        self._heads: dict[str, AuditChain] = {}
        self._pending: list[dict[str, Any]] = []
        self._tails: dict[str, tuple[int, str]] = {}
        if deferred:
            sa_event.listen(session, "before_commit", self._check_written)

    def start_chain(self, chain: str) -> None:
        """Begin a chain known to be new (a case just inserted): its head is written, not read first."""
        head = AuditChain(chain=chain, last_seq=0, last_hash=GENESIS)
        if not self.deferred:
            self.session.add(head)
        self._heads[chain] = head  # a deferred log adds it on write(), inserted once with its final values

    def _head(self, chain: str) -> AuditChain:
        head = self._heads.get(chain)
        if head is None:
            if self.lock:
                head = self.session.scalars(select(AuditChain).where(AuditChain.chain == chain)
                                            .with_for_update()).one_or_none()
            else:
                head = self.session.get(AuditChain, chain)  # no read when the session holds it already
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
    ) -> None:
        head = self._head(chain)
        last_seq, last_hash = self._tails.get(chain, (head.last_seq, head.last_hash))
        row = {"chain": chain, "seq": last_seq + 1, "instance_id": instance_id, "type": type, "at": at,
               "actor": actor, "element_id": element_id, "task_id": task_id,
               "data": json.loads(canonical_json(data or {})), "prev_hash": last_hash}
        row["hash"] = event_hash(row)
        if self.deferred:
            self._tails[chain] = (row["seq"], row["hash"])
            self._pending.append(row)
        else:
            head.last_seq, head.last_hash = row["seq"], row["hash"]
            self.session.add(AuditEvent(**row))

    def write(self) -> None:
        """Put the deferred events into the session, and move their chains' heads past them."""
        for chain, (last_seq, last_hash) in self._tails.items():
            head = self._heads[chain]
            head.last_seq, head.last_hash = last_seq, last_hash
            if head not in self.session:
                self.session.add(head)
        if self._pending:
            # One executemany: the events' ids are never needed back.
            self.session.execute(insert(AuditEvent.__table__), self._pending)
        self._pending, self._tails = [], {}

    def discard(self) -> None:
        """Drop the events not yet written (their step failed and was rolled back)."""
        self._pending, self._tails = [], {}

    def _check_written(self, _session: Session) -> None:
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} audit events were appended but not written")


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


class ChainChecker:
    """Checks events fed in (chain, seq) order, one at a time."""

    def __init__(self) -> None:
        self.chain: str | None = None
        self.expected_seq = 1
        self.prev = GENESIS

    def check(self, event: AuditEvent) -> ChainBreak | None:
        if event.chain != self.chain:
            self.chain, self.expected_seq, self.prev = event.chain, 1, GENESIS
        if event.seq != self.expected_seq:
            found = ChainBreak(event.chain, event.instance_id, event.seq,
                               f"expected seq {self.expected_seq}, found {event.seq} "
                               "(an event was deleted or inserted)")
        elif event.prev_hash != self.prev:
            found = ChainBreak(event.chain, event.instance_id, event.seq,
                               "prev_hash does not match the previous event")
        elif event_hash(event) != event.hash:
            found = ChainBreak(event.chain, event.instance_id, event.seq, "hash does not match the event's content")
        else:
            found = None
        self.expected_seq = event.seq + 1
        self.prev = event.hash
        return found


def verify_events(events: Iterable[AuditEvent]) -> Iterator[ChainBreak | None]:
    """Check events ordered by (chain, seq); yield None per good event, a break per bad one."""
    checker = ChainChecker()
    for event in events:
        yield checker.check(event)


@dataclass
class VerifyReport:
    ok: bool
    events_checked: int
    first_broken: ChainBreak | None

    def as_dict(self) -> dict[str, Any]:
        broken = None
        if self.first_broken is not None:
            broken = {"instance_id": self.first_broken.instance_id, "seq": self.first_broken.seq,
                      "chain": self.first_broken.chain, "reason": self.first_broken.reason}
        return {"ok": self.ok, "events_checked": self.events_checked, "first_broken": broken}


def verify_database(session: Session, *, instance_id: int | None = None, batch: int = 5000,
                    progress=None) -> VerifyReport:
    """Check every hash chain (or one case's), streaming, and name the first broken event.

    A chain whose last event is missing is caught against the chain head kept in
    `audit_chains`. `progress(count)` is called after each batch.
    """
    heads = {h.chain: h for h in session.scalars(select(AuditChain))}
    # Plain rows, streamed: memory stays flat however many events there are.
    table = AuditEvent.__table__
    query = select(table).order_by(table.c.chain, table.c.seq).execution_options(yield_per=batch)
    if instance_id is not None:
        chain_name = instance_chain(instance_id)
        query = query.where(table.c.chain == chain_name)
        heads = {chain_name: heads[chain_name]} if chain_name in heads else {}
    checked, seen_last = 0, {}
    first: ChainBreak | None = None
    checker = ChainChecker()
    for event in session.execute(query):
        result = checker.check(event)
        checked += 1
        seen_last[event.chain] = event
        if result is not None and first is None:
            first = result
        if progress is not None and checked % batch == 0:
            progress(checked)
    if first is None:
        for chain, head in sorted(heads.items()):
            last = seen_last.get(chain)
            if last is None or last.seq != head.last_seq or last.hash != head.last_hash:
                first = ChainBreak(chain, last.instance_id if last else None, (last.seq + 1) if last else 1,
                                   f"the chain ends at seq {last.seq if last else 0} but its head records "
                                   f"seq {head.last_seq} (events were deleted from its end)")
                break
    if progress is not None:
        progress(checked)
    return VerifyReport(first is None, checked, first)


EXPORT_COLUMNS = ("seq", "instance_id", "type", "at", "actor", "element_id", "task_id", "data", "prev_hash", "hash")


def export_query(*, instance_id: int | None = None, definition_key: str | None = None, actor: str | None = None,
                 since: datetime | None = None, until: datetime | None = None, since_seq: int | None = None):
    """The events an export or list asks for, in case order."""
    from storage.models import Instance

    query = select(AuditEvent.__table__).order_by(AuditEvent.id)
    if instance_id is not None:
        query = query.where(AuditEvent.instance_id == instance_id)
    if since_seq is not None:
        query = query.where(AuditEvent.seq > since_seq)
    if definition_key is not None:
        query = query.where(AuditEvent.instance_id.in_(
            select(Instance.id).where(Instance.definition_key == definition_key)))
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    return query


def export_lines(session: Session, query, fmt: str, batch: int = 2000) -> Iterator[str]:
    """Yield the export as text chunks: JSON lines, or CSV with a BOM so Excel reads Chinese."""
    import csv
    import io

    rows = session.execute(query.execution_options(yield_per=batch))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        yield "\ufeff" + buffer.getvalue()
    for event in rows:
        item = event_dict(event)
        if fmt == "csv":
            buffer = io.StringIO()
            csv.writer(buffer).writerow([canonical_json(item[c]) if c == "data" else
                                         ("" if item[c] is None else item[c]) for c in EXPORT_COLUMNS])
            yield buffer.getvalue()
        else:
            yield canonical_json(item) + "\n"
