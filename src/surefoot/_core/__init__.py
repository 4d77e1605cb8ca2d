"""The sans-I/O policy core: pure decisions of (configuration, state, now, outcome).

It imports no HTTP library, no Redis client and no I/O; its only third-party dependency
is ``http-sfv``, the structured-field parser behind the IETF rate-limit headers.
"""
