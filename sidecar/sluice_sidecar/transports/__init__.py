"""Upstream transports: how a prepared request reaches a provider. One method: ``send``."""

from sluice_sidecar.transports.base import Transport, UpstreamReply, UpstreamRequest
from sluice_sidecar.transports.fake import FakeTransport
from sluice_sidecar.transports.http import HttpTransport

__all__ = ["FakeTransport", "HttpTransport", "Transport", "UpstreamReply", "UpstreamRequest"]
