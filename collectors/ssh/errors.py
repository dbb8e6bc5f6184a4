"""The SSH collector's bounded failure reasons, apart from the client so the config loads without paramiko."""

from __future__ import annotations

from agent.kernel.errors import CollectError

#: every reason the collector can report; anything else is a bug.
REASONS = (
    "connect_timeout",  # no TCP connection, or the SSH session was not set up, within the deadline
    "connection_refused",  # TCP RST: nothing listens on the port
    "connect_failed",  # other network errors: no route, unreachable
    "dns_failed",  # the host name did not resolve, or the resolver did not answer in time
    "host_key_unknown",  # strict checking and the host is not in known_hosts
    "host_key_mismatch",  # the host offered a key other than the recorded one
    "auth_failed",  # the server refused our key or password
    "protocol_error",  # SSH negotiation failed (no common algorithm, garbage or malformed packets)
    "command_timeout",  # the command did not finish within its deadline
    "command_failed",  # non-zero exit status, killed by a signal, or too much output
    "parse_error",  # the output could not be parsed
    "disconnected",  # the connection dropped during the session
    "stuck",  # a previous call for this target has not returned yet
)


class SSHError(CollectError):
    """A target-level SSH failure. ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str = "") -> None:
        assert reason in REASONS, reason
        super().__init__(reason, message)


class KnownHostsError(CollectError):
    """The known_hosts file exists but cannot be read: the collector cannot check any host key, which
    is the agent's problem (a collector error), not the target's."""

    def __init__(self, message: str) -> None:
        super().__init__("known_hosts", message)
