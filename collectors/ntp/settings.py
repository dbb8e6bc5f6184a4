"""The ``ntp`` kind's configuration: ``collectors.ntp`` and ``targets.ntp[]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.kernel.collector import CollectorSettings, TargetConfig


class NtpSettings(CollectorSettings):
    """``collectors.ntp``: what every NTP query of this agent shares."""

    version: Literal[3, 4] = Field(
        default=4, description="NTP version of the requests; 3 for old servers that ignore version 4"
    )


class NtpTarget(TargetConfig):
    """``targets.ntp[]``: an NTP server to ask for its time."""

    address: str = Field(min_length=1, description="IP address or host name of the NTP server")
    port: int = Field(default=123, ge=1, le=65535)
    ip_protocol: Literal["auto", "ip4", "ip6"] = Field(
        default="auto", description="ip4 or ip6 to force a family; auto takes the resolver's first answer"
    )
