"""``ragtune.providers``: which API key may go to which URL (issue 28), without any network."""

from __future__ import annotations

import pytest

from ragtune.providers import BASELINE_KEY, LLM_KEY, api_key_for

SECRET = "sk-test-SECRET"


@pytest.fixture()
def openai_key(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv(LLM_KEY, raising=False)
    monkeypatch.delenv(BASELINE_KEY, raising=False)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://api.openai.com/v1", SECRET),
        ("https://API.OpenAI.com./v1", SECRET),  # the same host, spelled otherwise
        ("https://evilopenai.com/v1", None),  # a suffix without a dot boundary
        ("https://api.openai.com.evil.example/v1", None),
        ("https://evil.example/api.openai.com/v1", None),
        ("https://api.openai.com@evil.example/v1", None),  # userinfo: the host is evil.example
        ("http://api.openai.com/v1", None),  # never in clear text
        ("http://127.0.0.1:8000/v1", None),
    ],
)
def test_openai_key_goes_to_openai_only(openai_key, url, key):
    assert api_key_for(url, BASELINE_KEY) == key
    assert api_key_for(url, LLM_KEY) == key


def test_a_url_gets_the_key_named_for_its_use(openai_key, monkeypatch):
    monkeypatch.setenv(LLM_KEY, "llm-key")
    assert api_key_for("http://127.0.0.1:8000/v1", LLM_KEY) == "llm-key"
    assert api_key_for("http://127.0.0.1:8000/v1", BASELINE_KEY) is None  # the LLM's key is not the baseline's
    monkeypatch.setenv(BASELINE_KEY, "baseline-key")
    assert api_key_for("https://evilopenai.com/v1", BASELINE_KEY) == "baseline-key"


def test_the_hosted_baseline_sends_the_openai_key_to_openai_only(openai_key, tmp_path):
    """The baseline's openai client (made, no request sent) holds OPENAI_API_KEY for OpenAI's host only."""
    pytest.importorskip("openai")
    from ragtune.encoders.hosted import HostedEncoder

    keys = {}
    for url in ("https://evilopenai.com/v1", "https://api.openai.com/v1"):
        enc = HostedEncoder(f"{url}#text-embedding-3-small", cache_dir=tmp_path / url.split("/")[2])
        keys[url] = enc._openai().api_key
        enc.close()
    assert keys == {"https://evilopenai.com/v1": "unused", "https://api.openai.com/v1": SECRET}
