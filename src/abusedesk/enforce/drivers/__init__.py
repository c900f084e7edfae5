"""Enforcement drivers: one interface (`Driver`), several ways to cut a server off.

log       the embedded default: logs and remembers what it would do
script    an operator's executable: arguments and JSON on stdin
webhook   a signed HTTP POST to the provider's orchestration
exabgp    BGP blackhole (RFC 7999) and FlowSpec through a long-running ExaBGP
"""

from abusedesk.enforce.drivers.base import ActionSpec, Driver, DriverError
from abusedesk.enforce.drivers.chain import ChainDriver
from abusedesk.enforce.drivers.registry import DriverRegistry

__all__ = ["ActionSpec", "ChainDriver", "Driver", "DriverError", "DriverRegistry"]
