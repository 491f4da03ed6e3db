"""Append-only audit events with a hash chain per case.

Each event's `hash` is the sha256 of a canonical JSON of the event together with
the previous event's hash, so editing, reordering, deleting or inserting an event
breaks the chain at that point.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from json.encoder import encode_basestring
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import event as sa_event
from sqlalchemy import Connection, Text, and_, cast, func, insert, or_, select, type_coerce
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from storage.db import Database
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


def _chain_break(chain: str, instance_id: int | None, seq: int, expected_seq: int, linked: bool) -> ChainBreak:
    """The break an event makes: out of order, linked to the wrong predecessor, or (neither) changed."""
    if seq != expected_seq:
        reason = f"expected seq {expected_seq}, found {seq} (an event was deleted or inserted)"
    elif not linked:
        reason = "prev_hash does not match the previous event"
    else:
        reason = "hash does not match the event's content"
    return ChainBreak(chain, instance_id, seq, reason)


class ChainChecker:
    """Checks events fed in (chain, seq) order, one at a time."""

    def __init__(self) -> None:
        self.chain: str | None = None
        self.expected_seq = 1
        self.prev = GENESIS

    def check(self, event: AuditEvent) -> ChainBreak | None:
        if event.chain != self.chain:
            self.chain, self.expected_seq, self.prev = event.chain, 1, GENESIS
        found = None
        if event.seq != self.expected_seq or event.prev_hash != self.prev or event_hash(event) != event.hash:
            found = _chain_break(event.chain, event.instance_id, event.seq, self.expected_seq,
                                 event.prev_hash == self.prev)
        self.expected_seq = event.seq + 1
        self.prev = event.hash
        return found


def verify_events(events: Iterable[AuditEvent]) -> Iterator[ChainBreak | None]:
    """Check events ordered by (chain, seq); yield None per good event, a break per bad one."""
    checker = ChainChecker()
    for event in events:
        yield checker.check(event)


def _scan_columns(dialect: str) -> tuple:
    """What a verify scan reads per event: HASHED_FIELDS, then `hash`.

    `at` comes as the text SQLite stores ('YYYY-MM-DD HH:MM:SS.ffffff', naive UTC;
    PostgreSQL spells its timestamp so) and `data` as its stored JSON text, so most
    events hash without building a datetime or parsing JSON.
    """
    table = AuditEvent.__table__
    if dialect == "postgresql":
        at = func.to_char(func.timezone("UTC", table.c.at), "YYYY-MM-DD HH24:MI:SS.US")
    else:
        at = type_coerce(table.c.at, Text)
    return (table.c.chain, table.c.seq, table.c.instance_id, table.c.type, at, table.c.actor, table.c.element_id,
            table.c.task_id, cast(table.c.data, Text), table.c.prev_hash, table.c.hash)


def _scan_query(dialect: str, *, chain: str | None = None, since: str | None = None, before: str | None = None):
    """The events of one chain, or of the chains named from `since` up to `before`, by chain and seq."""
    table = AuditEvent.__table__
    query = select(*_scan_columns(dialect)).order_by(table.c.chain, table.c.seq)
    if chain is not None:
        query = query.where(table.c.chain == chain)
    if since is not None:
        query = query.where(table.c.chain >= since)
    if before is not None:
        query = query.where(table.c.chain < before)
    return query


def _fetch(connection: Connection, query, batch: int) -> Iterator[list[tuple]]:
    """Yield `query`'s rows in lists of up to `batch`, as the DBAPI cursor gives them.

    Building SQLAlchemy rows would cost psycopg a microsecond an event, a fifth
    of checking one. On PostgreSQL the cursor is a server-side one, so memory
    stays flat.
    """
    compiled = query.compile(dialect=connection.dialect)
    parameters = compiled.params
    if compiled.positional:
        parameters = tuple(parameters[name] for name in compiled.positiontup)
    dbapi_connection = connection.connection.dbapi_connection
    if connection.dialect.name == "postgresql":
        cursor = dbapi_connection.cursor("audit_verify")
    else:
        cursor = dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), parameters)
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        cursor.close()


_text = encode_basestring  # what the canonical encoder writes for a str
_integer = int.__repr__  # raises TypeError for anything but an int


def _stored_hash(row: Sequence[Any], data: str) -> str | None:
    """`event_hash` of a scanned event, putting `data` in as the JSON text of its data.

    Every other value is encoded as the canonical encoder encodes it, but for `at`,
    respelled from its one stored form. `at` and `data` each go in whole where
    canonical JSON has the time and the data, so the text hashed equals an event's
    canonical JSON only if the event reads back equal to it: a matching hash
    proves the event. None if a value is not of its column's type or form.
    """
    chain, seq, instance_id, type, at, actor, element_id, task_id, _data, prev_hash, _hash = row
    try:
        if len(at) != 26 or at[10] != " ":
            return None
        body = (f'{{"actor":{_text(actor)},"at":"{at[:10]}T{at[11:]}Z","chain":{_text(chain)},"data":{data},'
                f'"element_id":{"null" if element_id is None else _text(element_id)},"instance_id":'
                f'{"null" if instance_id is None else _integer(instance_id)},"prev_hash":{_text(prev_hash)},'
                f'"seq":{_integer(seq)},"task_id":{"null" if task_id is None else _integer(task_id)},'
                f'"type":{_text(type)}}}')
        return hashlib.sha256(body.encode()).hexdigest()
    except (TypeError, UnicodeEncodeError):
        return None


def _hashes_slowly(connection: Connection, row: Sequence[Any]) -> bool:
    """Whether an event whose stored data text did not hash as it is still carries its hash.

    Events stored before data was kept as canonical JSON hash once their data is
    re-encoded; failing that, the event is read back whole and given to
    `event_hash`, so only the definition of the hash ever calls an event broken.
    """
    chain, seq, data, recorded = row[0], row[1], row[8], row[10]
    try:
        if _stored_hash(row, canonical_json(json.loads(data))) == recorded:
            return True
    except ValueError:
        pass
    table = AuditEvent.__table__
    event = connection.execute(select(table).where(table.c.chain == chain, table.c.seq == seq)).one_or_none()
    return event is not None and event_hash(event) == event.hash


def _scan(connection: Connection, query, batch: int, progress=None) -> tuple[int, ChainBreak | None]:
    """Check the events `query` reads, by chain and seq: return how many there were and the first break.

    Events after the first break are only counted; nothing later can be reported.
    `progress(count)` is called after each full batch.
    """
    checked, first = 0, None
    chain, expected_seq, prev = None, 1, GENESIS
    for rows in _fetch(connection, query, batch):
        if first is None:
            for row in rows:
                row_chain, seq, instance_id, *_, data, prev_hash, recorded = row
                if row_chain != chain:
                    chain, expected_seq, prev = row_chain, 1, GENESIS
                if (seq != expected_seq or prev_hash != prev
                        or (_stored_hash(row, data) != recorded and not _hashes_slowly(connection, row))):
                    first = _chain_break(row_chain, instance_id, seq, expected_seq, prev_hash == prev)
                    break
                expected_seq, prev = seq + 1, recorded
        checked += len(rows)
        if progress is not None and len(rows) == batch:
            progress(checked)
    return checked, first


def _scan_range(url: URL, batch: int, names: tuple[str | None, str | None]) -> tuple[int, ChainBreak | None]:
    """In a worker process, check the chains named from `since` up to (not including) `before`."""
    since, before = names
    db = Database(url, pool_size=1)
    try:
        with db.unit_of_work(write=False) as uow:
            return _scan(uow.session.connection(), _scan_query(db.dialect, since=since, before=before), batch)
    finally:
        db.dispose()


# Below this many events a second process costs more to start than it saves.
PARALLEL_MIN_EVENTS = 200_000


def _chain_ranges(session: Session, parts: int) -> list[tuple[str | None, str | None]]:
    """Split the chain names, in the database's order, into `parts` ranges of about as many events each.

    Sizes come from the chain heads, read as a stream; the ranges cover every
    name whatever the heads say, so they decide only how the work is shared.
    """
    heads = AuditChain.__table__
    total = session.scalar(select(func.coalesce(func.sum(heads.c.last_seq), 0)))
    bounds: list[str] = []
    seen = 0
    rows = session.execute(select(heads.c.chain, heads.c.last_seq).order_by(heads.c.chain)
                           .execution_options(stream_results=True, yield_per=10_000))
    for chain, last_seq in rows:
        if total and seen >= total * (len(bounds) + 1) / parts:
            bounds.append(chain)
        seen += last_seq
    edges = [None, *bounds, None]
    return list(zip(edges, edges[1:]))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _workers(session: Session, requested: int | None) -> int:
    """How many processes should scan: as `requested`, else one per CPU once the audit log is large."""
    url = session.connection().engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return 1  # no other process can open this database
    if requested is not None:
        return max(requested, 1)
    cpus = _cpus()
    if cpus < 2:
        return 1
    events = session.scalar(select(func.coalesce(func.sum(AuditChain.last_seq), 0)))
    return cpus if events >= PARALLEL_MIN_EVENTS else 1


def _process_context() -> multiprocessing.context.BaseContext:
    """Fork workers when this process runs one thread: it is cheap and re-imports nothing.

    A threaded process (a web server) spawns them instead, since a forked child
    could inherit a lock some other thread held. Workers open connections of
    their own and never touch the ones they inherit.
    """
    single = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if single else "spawn")


def _scan_in_parallel(session: Session, workers: int, batch: int, progress) -> tuple[int, ChainBreak | None]:
    """Scan ranges of chains in `workers` processes; the first break is the one a single scan finds first."""
    # Several ranges per worker share the work out evenly and let progress move.
    ranges = _chain_ranges(session, workers * 4)
    scan = partial(_scan_range, session.connection().engine.url, batch)
    checked, first = 0, None
    with ProcessPoolExecutor(min(workers, len(ranges)), mp_context=_process_context()) as pool:
        # Answers come in range order, which is chain order.
        for done, (count, found) in enumerate(pool.map(scan, ranges), 1):
            checked += count
            if first is None:
                first = found
            if progress is not None and done < len(ranges):
                progress(checked)
    return checked, first


def _tail_break(session: Session, chain: str | None) -> ChainBreak | None:
    """The first chain, by name, whose last event is not the one its head records: events cut from its end."""
    heads, events, same_chain = AuditChain.__table__, AuditEvent.__table__, AuditEvent.__table__.alias()
    last_seq = select(func.max(same_chain.c.seq)).where(same_chain.c.chain == heads.c.chain).scalar_subquery()
    query = (select(heads.c.chain, heads.c.last_seq, events.c.seq, events.c.instance_id)
             .select_from(heads.outerjoin(events, and_(events.c.chain == heads.c.chain, events.c.seq == last_seq)))
             .where(or_(events.c.seq.is_(None), events.c.seq != heads.c.last_seq,
                        events.c.hash != heads.c.last_hash)))
    if chain is not None:
        query = query.where(heads.c.chain == chain)
    # Normally no row; the first is picked here so names compare as Python compares them.
    found = min(session.execute(query.execution_options(stream_results=True, yield_per=10_000)),
                key=lambda row: row.chain, default=None)
    if found is None:
        return None
    ends_at = found.seq or 0
    return ChainBreak(found.chain, found.instance_id, ends_at + 1,
                      f"the chain ends at seq {ends_at} but its head records seq {found.last_seq} "
                      "(events were deleted from its end)")


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
                    progress=None, workers: int | None = None) -> VerifyReport:
    """Check every hash chain (or one case's), streaming, and name the first broken event.

    The first break is the first by chain and seq; if there is none, a chain whose
    last event is missing is caught against the chain head kept in `audit_chains`.
    `progress(count)` is called as events are checked, and once at the end.

    `workers` processes scan ranges of chains side by side (by default one per
    CPU once there are PARALLEL_MIN_EVENTS events) and name the break one process
    would. A threaded caller's workers are spawned, so its script must guard its
    entry point with `if __name__ == "__main__":`.
    """
    connection = session.connection()
    chain = instance_chain(instance_id) if instance_id is not None else None
    workers = 1 if chain is not None else _workers(session, workers)
    if workers > 1:
        checked, first = _scan_in_parallel(session, workers, batch, progress)
    else:
        checked, first = _scan(connection, _scan_query(connection.dialect.name, chain=chain), batch, progress)
    if first is None:
        first = _tail_break(session, chain)
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
