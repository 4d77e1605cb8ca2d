"""``/orders``: order creation with idempotency keys, and ``fail_after_commit`` (the order
is stored, then the connection is reset)."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any

from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import (
    _ECHO_METHODS,
    Route,
    _BadRequest,
    _error,
    _json,
    _method_not_allowed,
    _not_found,
    _Req,
    _Resp,
    _Taken,
)

__all__ = ["OrderRoutes"]

if TYPE_CHECKING:
    from surefoot.sandbox._routes_faults import FaultRoutes


class OrderRoutes(RouteGroup):
    """The stored orders and the idempotency keys."""

    def __init__(self, lock: threading.Lock, faults: FaultRoutes) -> None:
        super().__init__(lock)
        self._faults = faults
        self.clear()

    def routes(self) -> dict[str, Route]:
        return {"orders": ("/orders", self._orders)}

    def clear(self) -> None:
        self._order_store: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[str, tuple[str, str]] = {}
        self._order_seq = 0
        self._orders_created = 0

    def stats(self) -> dict[str, Any]:
        return {"orders_created": self._orders_created}

    def _orders(self, req: _Req) -> _Resp | _Taken:
        if req.rest:
            if req.method not in _ECHO_METHODS:
                return _method_not_allowed("GET, HEAD")
            with self._lock:
                order = self._order_store.get(req.rest)
            return _json(200, order) if order is not None else _not_found(req)
        if req.method in _ECHO_METHODS:
            with self._lock:
                orders = list(self._order_store.values())
            return _json(200, {"orders": orders, "count": len(orders)})
        if req.method != "POST":
            return _method_not_allowed("GET, HEAD, POST")
        return self._create(req)

    def _create(self, req: _Req) -> _Resp | _Taken:
        data = req.json_body()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _BadRequest("the order must be a JSON object")
        fingerprint = hashlib.sha256(
            json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        key = req.header("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise _BadRequest("Idempotency-Key must be 1 to 255 characters")
        fail_p = req.float_arg("fail_after_commit", 0.0, 0.0, 1.0)
        seed = req.int_arg("seed")
        with self._lock:
            if key is not None and key in self._idempotency:
                stored_fingerprint, order_id = self._idempotency[key]
                if stored_fingerprint != fingerprint:
                    return _error(
                        422,
                        "idempotency_key_reused",
                        message="this Idempotency-Key was used with a different body",
                    )
                replayed = dict(self._order_store[order_id])
                return _json(200, replayed, [("Idempotent-Replayed", "true")])
            self._order_seq += 1
            order_id = f"ord_{self._order_seq}"
            order = {"id": order_id, **{k: v for k, v in data.items() if k != "id"}}
            self._order_store[order_id] = order
            self._orders_created += 1
            if key is not None:
                self._idempotency[key] = (fingerprint, order_id)
            fail = self._faults.roll(fail_p, seed)
            if fail:
                self._faults.count("fail_after_commit")
        if fail:
            return self._faults.drop(req, "reset", "/orders")
        return _json(201, order, [("Location", f"/orders/{order_id}")])
