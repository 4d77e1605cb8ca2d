"""Observability on surefoot's one typed hook (:mod:`surefoot.events`), as optional extras.

* :mod:`surefoot.instrumentation.otel` — OpenTelemetry spans, one per logical request and
  one per attempt (``pip install 'surefoot[otel]'``);
* :mod:`surefoot.instrumentation.prometheus` — Prometheus counters and histograms with
  bounded label values (``pip install 'surefoot[prometheus]'``);
* :mod:`surefoot.instrumentation.structlog` — every event as structlog key-values
  (``pip install 'surefoot[structlog]'``).

Each is a hook: pass it as ``hook=`` to a client, or several at once with
:func:`surefoot.events.combine_hooks`::

    import surefoot
    from surefoot.events import combine_hooks
    from surefoot.instrumentation import OpenTelemetryHook, PrometheusHook

    client = surefoot.Client(
        "https://api.example.com",
        hook=combine_hooks([OpenTelemetryHook(), PrometheusHook()]),
    )

A hook used alone tells surefoot which events it uses (``wants``), so the others are not
even built; :func:`~surefoot.events.combine_hooks` gives each hook every event.

Importing this package imports none of the libraries: each name is imported on first use,
and a missing library is a :class:`~surefoot.errors.MissingExtra` naming the
``pip install`` that fixes it.
"""

from __future__ import annotations

from surefoot._lazy import attach

#: ``typing.TYPE_CHECKING`` without importing typing (type checkers read it by its name).
TYPE_CHECKING = False

if TYPE_CHECKING:
    from surefoot.instrumentation.otel import OpenTelemetryHook as OpenTelemetryHook
    from surefoot.instrumentation.prometheus import PrometheusHook as PrometheusHook
    from surefoot.instrumentation.structlog import StructlogHook as StructlogHook
else:  # names are imported on first use
    __getattr__, __dir__, __all__ = attach(__name__, __file__, ("otel", "prometheus", "structlog"))
