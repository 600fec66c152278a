"""Which egress proxy an upstream URL goes through (unit)."""

from __future__ import annotations

import pytest

from sluice_sidecar.transports.proxies import EnvProxies

PROXIES = {
    "https": "http://egress:3128",
    "http": "http://plain-egress:3128",
    "no": "localhost,.internal,10.0.0.7",
}


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("https://api.openai.com/v1/chat/completions", "http://egress:3128"),
        ("http://vllm.example.com:8000/v1/chat/completions", "http://plain-egress:3128"),
        ("https://models.internal/v1/messages", None),
        ("http://10.0.0.7:11434/v1/chat/completions", None),
        ("http://localhost:8000/v1", None),
    ],
)
def test_the_proxy_by_scheme_unless_no_proxy_names_the_host(url: str, proxy: str | None) -> None:
    assert EnvProxies(PROXIES).for_url(url) == proxy


def test_the_environment_is_read_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    proxies = EnvProxies()
    monkeypatch.delenv("HTTPS_PROXY")  # later changes are not seen: read once, at start
    assert proxies.for_url("https://api.anthropic.com/v1/messages") == "http://egress:3128"
    assert proxies.for_url("https://internal.example/v1") is None
    assert EnvProxies({}).for_url("https://api.anthropic.com/v1/messages") is None
