"""``/orders``: order creation with idempotency keys, and ``fail_after_commit`` (the order
is stored, then the connection is reset).

``fault=F`` (with ``p``, default 0.3, ``seed``, ``retry_after`` and ``hang``, as on
``/flaky``) injects one more fault into a creation, idempotent replays included:

* before anything is stored: ``F`` a 4xx/5xx status (with ``Retry-After`` when
  ``retry_after`` is given), or ``reset`` (the connection is reset);
* after the order is stored (the side effect happened, the answer is lost or late):
  ``timeout`` (the answer comes ``hang`` seconds late), ``truncate`` (half its body, then
  the connection is closed) or ``slow`` (its body trickled over ``hang`` seconds).

Injected faults are counted in ``/stats`` ``faults`` as ``<F>_before_commit`` or
``<F>_after_commit``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any

from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import (
    _ECHO_METHODS,
    Headers,
    Route,
    _BadRequest,
    _error,
    _header_value,
    _json,
    _method_not_allowed,
    _not_found,
    _Req,
    _Resp,
    _Taken,
)

__all__ = ["OrderRoutes"]

_BEFORE_COMMIT = ("reset",)
_AFTER_COMMIT = ("timeout", "truncate", "slow")
_MAX_HANG = 60.0

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
        fault, hang, fault_headers = self._fault(req, seed)
        if fault is not None and fault not in _AFTER_COMMIT:  # nothing stored
            if fault == "reset":
                return self._faults.drop(req, "reset", "/orders")
            return _error(int(fault), "injected_fault", fault_headers)
        replay: _Resp | None = None
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
                replay = _json(200, replayed, [("Idempotent-Replayed", "true")])
            else:
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
        if replay is not None:  # (the fault's roll came first; fail_after_commit: never)
            return replay if fault is None else self._after_commit(req, fault, replay, hang)
        created = _json(201, order, [("Location", f"/orders/{order_id}")])
        if fault is not None:
            return self._after_commit(req, fault, created, hang)
        if fail:
            return self._faults.drop(req, "reset", "/orders")
        return created

    def _fault(self, req: _Req, seed: int | None) -> tuple[str | None, float, Headers]:
        """The ``fault=`` to inject into this request if its dice say so (counted), with
        its ``hang`` and the headers of a status fault. Without ``fault=``: none, and its
        parameters are not read."""
        fault = req.arg("fault")
        if fault is None:
            return None, 0.0, []
        fault = fault.lower()
        if fault not in (*_BEFORE_COMMIT, *_AFTER_COMMIT) and not (
            fault.isdigit() and 400 <= int(fault) <= 599
        ):
            raise _BadRequest("fault must be reset, timeout, truncate, slow or a 4xx/5xx code")
        p = req.float_arg("p", 0.3, 0.0, 1.0)
        hang = req.float_arg("hang", 5.0, 0.0, _MAX_HANG)
        retry_after = req.arg("retry_after")
        headers = [("Retry-After", _header_value(retry_after))] if retry_after else []
        with self._lock:
            if not self._faults.roll(p, seed):
                return None, hang, headers
            when = "after" if fault in _AFTER_COMMIT else "before"
            self._faults.count(f"{fault}_{when}_commit")
        return fault, hang, headers

    def _after_commit(
        self, req: _Req, fault: str, resp: _Resp, hang: float
    ) -> _Resp | _Taken:
        """``resp`` (the order is stored), ``hang`` seconds late, cut short or trickled
        over ``hang`` seconds."""
        if fault == "timeout":
            self._faults.hang(hang)
            return resp
        if fault == "truncate":
            return self._faults.truncate_response(req, resp, "/orders")
        return self._faults.trickle(req, resp, hang, "/orders")
