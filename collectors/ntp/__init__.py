"""NTP servers' time against this host's clock, over SNTP (the example of a collector kind in CONTRIBUTING)."""

from collectors.ntp.collector import NtpCollector

__all__ = ["NtpCollector"]
