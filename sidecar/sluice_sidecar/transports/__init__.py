"""Upstream transports: how a prepared request reaches a provider. One method: ``send``."""

from sluice_sidecar.transports.base import Transport, UpstreamReply, UpstreamRequest
from sluice_sidecar.transports.http import HttpTransport

__all__ = ["HttpTransport", "Transport", "UpstreamReply", "UpstreamRequest"]
