"""The flow collector (the `traffic` role): where it listens and how it reads. `[traffic]` in
the configuration, `ABUSEDESK_TRAFFIC__…` in the environment (for example
`ABUSEDESK_TRAFFIC__NETFLOW__PORT=2055`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from abusedesk.traffic.choices import AnalysisMode


class UdpListen(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535, description="0: any free port (tests)")


class TrafficSettings(BaseModel):
    netflow: UdpListen = Field(
        default=UdpListen(port=2055),
        description="NetFlow v5, NetFlow v9 and IPFIX, all on one port (told apart by version)",
    )
    sflow: UdpListen = Field(default=UdpListen(port=6343), description="sFlow v5")
    receive_buffer_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=64 * 1024,
        description="SO_RCVBUF asked for each socket; the kernel caps it at net.core.rmem_max "
        "(the granted size is logged)",
    )
    batch_size: int = Field(
        default=512, ge=1, le=65536, description="datagrams read before one decode_many call"
    )
    default_sampling_rate: int = Field(
        default=1, ge=1, description="1 in N, for an exporter that has not said its sampling"
    )
    sampling_rates: dict[str, int] = Field(
        default_factory=dict,
        description="per exporter address, the rate to assume when the exporter does not say",
    )
    template_expiry_seconds: float = Field(
        default=1800.0, gt=0, description="a template not resent for this long is forgotten"
    )
    expire_interval_seconds: float = Field(
        default=30.0, gt=0, description="how often stale templates and held data sets are purged"
    )
    analysis: AnalysisMode = Field(
        default=AnalysisMode.PROCESS,
        description="where decoded flows are analysed: a child process (the reader never "
        "waits for it) or a thread of the role's own process",
    )
    report_interval_seconds: float = Field(
        default=300.0, gt=0, description="how often the collector logs what it received"
    )

    def sampling_rate_for(self, exporter: str) -> int:
        """The rate assumed for ``exporter`` when it has not said one."""
        return self.sampling_rates.get(exporter, self.default_sampling_rate)
