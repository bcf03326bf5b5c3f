"""An account's orders as records of their own beside it (stored format 3): keys, diffs, reads.

Key layout in a partition's store and changelog (the codec is `account_codec.py`):
- `customer id` -> the account, without its orders;
- `customer id` + `\\x00o` + `order id` -> one order (msgpack of the `Order`);
- keys starting with `\\x00` -> what is kept beside the accounts (first-seen marks, metadata).
NUL sorts first, so in key order an account is followed by its own orders, and one prefix
iteration over `customer id\\x00o` reads them (RocksDB; `MemoryDB`, the in-memory store, which
lives here, indexes such keys by what precedes their first NUL). A customer id holding a NUL
keeps its orders inline (format 2): its order keys could fall under another customer's prefix.
A change of an account writes the orders that changed (compared by identity: an order is
replaced, never mutated) and a tombstone (a delete locally) for each one gone, never the
unchanged ones: no encoding, and no bytes, grow with the customer's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import attrgetter
from typing import Any

import msgspec
from msgspec.structs import replace

from processors.account import Account, is_blank
from processors.points_state import Order
from streams.adapters.account_codec import (
    decode_account,
    decode_orders,
    encode_account,
    encode_inline,
    encode_order,
    is_order,
    orders_apart,
)

ORDER_INFIX = b"\x00o"
_ORDER_ID = attrgetter("order_id")
Record = tuple[bytes, bytes | None]
"""A key and its value (None: a tombstone, a delete locally)."""


def apart(customer_id: str) -> bool:
    """Whether the customer's orders are stored as records of their own (a NUL in the id would
    let its order keys fall under another customer's prefix)."""
    return "\x00" not in customer_id


def account_value(account: Account) -> bytes | None:
    """The account's own record: None (a tombstone) for an empty one; its orders inline only
    for a customer id holding a NUL."""
    if is_blank(account):
        return None
    return encode_account(account) if apart(account.customer_id) else encode_inline(account)


def order_changes(customer: bytes, new: dict[str, Order], old: dict[str, Order]) -> list[Record]:
    """The records of the orders that changed from `old` to `new` (a tombstone for each one
    gone), found without encoding anything: by identity (an order is replaced, never mutated),
    else by value (orders read back from RocksDB are equal to, not the same as, the ones kept)."""
    if new is old:
        return []
    put, gone = _by_position(new, old) if len(old) > SHORT else _by_id(new, old)
    prefix = customer + ORDER_INFIX
    records: list[Record] = [(prefix + k.encode(), encode_order(new[k])) for k in put]
    if gone:
        records += [(prefix + k.encode(), None) for k in gone]
    return records


SHORT = 12
"""Up to this many orders a diff by id costs less than one by position."""


def _by_id(new: dict[str, Order], old: dict[str, Order]) -> tuple[list[str], list[str]]:
    """The ids put and gone, order by order."""
    put = [k for k, order in new.items() if order is not (was := old.get(k)) and order != was]
    gone = [] if old.keys() <= new.keys() else sorted(old.keys() - new.keys())
    return put, gone


def _by_position(new: dict[str, Order], old: dict[str, Order]) -> tuple[list[str], list[str]]:
    """The ids put and gone of a long history, compared by position with list equality, in C
    (a dict the rules derive from another keeps its order): no Python step per order, and
    unchanged runs are skipped by halves. By id if the ids do not line up (some removed)."""
    new_ids, old_ids = list(new), list(old)
    shared = min(len(new_ids), len(old_ids))
    if new_ids[:shared] != old_ids[:shared]:
        return _by_id(new, old)
    values, before = list(new.values()), list(old.values())
    put = new_ids[shared:]
    if values[:shared] != before[:shared]:  # by identity, else by value
        put += [new_ids[i] for i in _differing(values, before, 0, shared)]
    return put, old_ids[shared:]


def _differing(new: list[Order], old: list[Order], lo: int, hi: int) -> list[int]:
    """The positions in [lo, hi) where `new` and `old` differ, by halves (list equality skips an
    unchanged half in C)."""
    if new[lo:hi] == old[lo:hi]:
        return []
    if hi - lo <= 4:
        return [i for i in range(lo, hi) if not _same(new[i], old[i])]
    mid = (lo + hi) // 2
    return _differing(new, old, lo, mid) + _differing(new, old, mid, hi)


def _same(order: Order, was: Order | None) -> bool:
    return order is was or order == was


def read_account(db: Any, customer: bytes) -> tuple[Account, bool] | None:
    """The stored account under key `customer` with its orders, and whether they are records
    of their own (format 3; else inline, format 2 or 1); None if there is none."""
    raw = db.get(customer)
    if raw is None:
        return None
    account = decode_account(raw)
    if not orders_apart(raw):
        return account, False
    return with_orders(account, read_orders(db, customer)), True


def read_orders(db: Any, customer: bytes) -> dict[str, Order]:
    """The order records stored for the customer under key `customer`: a prefix iteration, and
    one decoding of them all (again without the values that are not orders, if it fails on one:
    the inline account of a customer id holding `\\x00o`)."""
    raws = [raw for _, raw in _prefixed(db, customer + ORDER_INFIX)]
    try:
        return by_id(raws)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return by_id([raw for raw in raws if is_order(raw)])


def by_id(raws: list[bytes]) -> dict[str, Order]:
    """Order records decoded, by order id (the key an order is kept and stored under)."""
    orders = decode_orders(raws)
    return dict(zip(map(_ORDER_ID, orders), orders, strict=True))


def with_orders(account: Account, orders: dict[str, Order]) -> Account:
    """`account` (of format 3, without orders) with its orders attached."""
    if not orders:
        return account
    return replace(account, points=replace(account.points, orders=orders))


def assemble(items: Iterable[tuple[Any, Any]]) -> Iterator[Account]:
    """Every account of `items` (keys and values in key order) once, with its orders: an
    account of format 3 is followed by its order records. Keys starting with `\\x00` and
    orders without their account are skipped."""
    pending: tuple[bytes, Account, list[bytes]] | None = None
    for key, raw in items:
        if not isinstance(key, bytes) or not isinstance(raw, bytes) or key[:1] == b"\x00":
            continue
        if is_order(raw):
            if pending is not None and key.startswith(pending[0]):
                pending[2].append(raw)
            continue
        account = decode_account(raw)
        if not orders_apart(raw):  # orders inline: complete as it is
            yield account
            continue
        if pending is not None:
            yield with_orders(pending[1], by_id(pending[2]))
        pending = (key + ORDER_INFIX, account, [])
    if pending is not None:
        yield with_orders(pending[1], by_id(pending[2]))


def ordered_items(db: Any) -> Iterable[tuple[Any, Any]]:
    """Every key and value of a partition's store, in key order."""
    return sorted(db.items()) if isinstance(db, MemoryDB) else db.items()


def _prefixed(db: Any, prefix: bytes) -> list[tuple[bytes, bytes]]:
    """The keys and values of `db` starting with `prefix`, in key order."""
    if isinstance(db, MemoryDB):
        return db.prefixed(prefix)
    found = []
    for item in db.items(from_key=prefix):
        if not item[0].startswith(prefix):
            break
        found.append(item)
    return found


class MemoryBatch:
    """A write batch of the in-memory store (`REWARDS_STORE=memory://`, throwaway runs)."""

    def __init__(self) -> None:
        self.ops: list[Record] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Set `key` when the batch is written."""
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        """Remove `key` when the batch is written."""
        self.ops.append((key, None))


class MemoryDB(dict[bytes, bytes]):
    """The in-memory store of one partition: rebuilt from the changelog whenever it is opened.
    Keys holding a NUL (order records) are indexed by what precedes it, for prefix reads."""

    def __init__(self) -> None:
        super().__init__()
        self._under: dict[bytes, set[bytes]] = {}

    def put(self, key: bytes, value: bytes, _options: object = None) -> None:
        """Set one key."""
        self._set(key, value)

    def write(self, batch: MemoryBatch, _options: object = None) -> None:
        """Apply a batch."""
        for key, value in batch.ops:
            self._set(key, value)

    def prefixed(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """The keys and values starting with `prefix` (which holds a NUL), in key order."""
        keys = self._under.get(prefix[: prefix.find(b"\x00", 1)], ())
        return sorted((k, self[k]) for k in keys if k.startswith(prefix))

    def _set(self, key: bytes, value: bytes | None) -> None:
        cut = key.find(b"\x00", 1) if key[:1] != b"\x00" else -1
        if value is not None:
            if cut > 0:
                self._under.setdefault(key[:cut], set()).add(key)
            self[key] = value
        elif self.pop(key, None) is not None and cut > 0:
            under = self._under[key[:cut]]
            under.discard(key)
            if not under:
                del self._under[key[:cut]]

    def close(self) -> None:
        """Nothing to release."""
