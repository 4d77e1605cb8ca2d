"""Testing helpers: a fake clock to drive time by hand, and test mode.

``FakeClock`` is a :class:`Clock` whose ``sleep`` advances time instead of waiting; pass it
as ``clock=`` to any client, pacer or token cache. In test mode (``with testing():`` or
``set_testing(True)``) every wait surefoot makes is skipped, so a test of retries and
backoff runs instantly. The sandbox API for your own tests is :mod:`surefoot.sandbox`.
"""

from __future__ import annotations

from surefoot._core._clock import Clock, FakeClock, SystemClock, is_testing, set_testing, testing

__all__ = ["Clock", "FakeClock", "SystemClock", "is_testing", "set_testing", "testing"]
