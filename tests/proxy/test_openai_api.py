"""The OpenAI wire format through the sidecar, driven by the official openai SDK."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.sidecar import SidecarHandle, policy, provider_for
from tests.support.simulator import SimulatedLLM

MESSAGES = [{"role": "user", "content": "Write a haiku about sluice gates"}]


def async_client(sidecar: SidecarHandle, **kwargs: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sidecar.openai_url, api_key="sk-app", **kwargs)  # type: ignore[arg-type]


async def test_chat_completion_async(sidecar: SidecarHandle, llm: SimulatedLLM) -> None:
    async with async_client(sidecar) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content.startswith("Simulated answer from sim")
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert llm.requests[-1].path == "/v1/chat/completions"


async def test_chat_completion_sync_client(sidecar: SidecarHandle) -> None:
    def call() -> openai.types.chat.ChatCompletion:
        with openai.OpenAI(base_url=sidecar.openai_url, api_key="sk-app") as client:
            return client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    completion = await asyncio.to_thread(call)
    assert completion.choices[0].finish_reason == "stop"


async def test_chat_stream_relays_every_chunk(sidecar: SidecarHandle, llm: SimulatedLLM) -> None:
    async with async_client(sidecar) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Simulated answer from sim")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len(chunks) >= llm.chunks


async def test_chat_stream_sync_client(sidecar: SidecarHandle) -> None:
    def call() -> str:
        with openai.OpenAI(base_url=sidecar.openai_url, api_key="sk-app") as client:
            stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert (await asyncio.to_thread(call)).startswith("Simulated answer")


async def test_stream_chunks_arrive_before_the_answer_is_complete(
    llm_factory, sidecar_factory
) -> None:
    slow = await llm_factory(name="slow", stream_chunk_delay_s=0.2, chunks=4)
    sidecar = await sidecar_factory(policy(providers=[provider_for(slow)]))
    loop = asyncio.get_running_loop()
    async with async_client(sidecar) as client:
        started = loop.time()
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        first_at = None
        async for _chunk in stream:
            first_at = first_at or loop.time() - started
        total = loop.time() - started
    # Not buffered: the first chunk came long before the last (4 chunks 0.2 s apart).
    assert first_at is not None and total - first_at >= 0.5


async def test_legacy_completions_stream_and_not(sidecar: SidecarHandle) -> None:
    async with async_client(sidecar) as client:
        completion = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
        stream = await client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True
        )
        streamed = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
    assert completion.choices[0].text
    assert streamed == completion.choices[0].text


async def test_embeddings_default_base64_and_float(sidecar: SidecarHandle) -> None:
    async with async_client(sidecar) as client:
        default = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        floats = await client.embeddings.create(
            model="text-embedding-3-small", input="a", encoding_format="float"
        )
    assert [item.index for item in default.data] == [0, 1]
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding)
    assert default.usage.prompt_tokens > 0


async def test_models_list(sidecar: SidecarHandle) -> None:
    async with async_client(sidecar) as client:
        models = [model.id async for model in client.models.list()]
    assert models


async def test_unknown_fields_pass_through_untouched(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with async_client(sidecar) as client:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            temperature=0.1,
            max_tokens=50,
            extra_body={"vendor_knob": {"nested": [1, 2, 3]}, "seed": 7},
        )
    sent = llm.requests[-1].json
    assert sent["vendor_knob"] == {"nested": [1, 2, 3]}
    assert sent["seed"] == 7
    assert sent["messages"] == MESSAGES
    assert sent["temperature"] == 0.1  # the request's own values win over the preset


async def test_preset_fills_unset_parameters(sidecar: SidecarHandle, llm: SimulatedLLM) -> None:
    async with async_client(sidecar) as client:
        await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-LLM-Operation": "SceneAnalysis"}
        )
    sent = llm.requests[-1].json
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 800  # openai-compatible providers get max_tokens
    assert "x-llm-operation" not in {k.lower() for k in llm.requests[-1].headers}


async def test_forced_preset_overrides_request(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm)],
            operations={"Strict": {"preset": {"temperature": 0.0, "maxTokens": 10, "force": True}}},
        )
    )
    async with async_client(sidecar) as client:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            temperature=1.5,
            max_completion_tokens=999,
            extra_headers={"X-LLM-Operation": "Strict"},
        )
    sent = llm.requests[-1].json
    assert sent["temperature"] == 0.0
    assert sent["max_tokens"] == 10 and "max_completion_tokens" not in sent


async def test_app_key_passes_through_without_configured_key(
    sidecar: SidecarHandle, llm: SimulatedLLM
) -> None:
    async with async_client(sidecar) as client:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert llm.requests[-1].headers["authorization"] == "Bearer sk-app"


async def test_configured_key_replaces_app_key(
    llm: SimulatedLLM, sidecar_factory, tmp_path, monkeypatch
) -> None:
    (tmp_path / "openai-creds").mkdir()
    (tmp_path / "openai-creds" / "apiKey").write_text("sk-from-secret\n")
    sidecar = await sidecar_factory(
        policy(
            providers=[provider_for(llm, apiKeySecretRef={"name": "openai-creds", "key": "apiKey"})]
        ),
        secrets_dir=tmp_path,
    )
    async with async_client(sidecar) as client:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert llm.requests[-1].headers["authorization"] == "Bearer sk-from-secret"


async def test_model_routing_and_model_map(llm_factory, sidecar_factory) -> None:
    gpt = await llm_factory(name="gpt")
    local = await llm_factory(name="local")
    sidecar = await sidecar_factory(
        policy(
            providers=[
                provider_for(gpt, models=["gpt-*"]),
                provider_for(local, models=["llama*", "small"], modelMap={"small": "llama3:8b"}),
            ]
        )
    )
    async with async_client(sidecar) as client:
        a = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES
        )
        b = await client.chat.completions.with_raw_response.create(model="small", messages=MESSAGES)
        with pytest.raises(openai.BadRequestError, match="no configured openai provider"):
            await client.chat.completions.create(model="claude-3", messages=MESSAGES)
    assert a.headers["x-sim-name"] == "gpt"
    assert b.headers["x-sim-name"] == "local"
    assert local.requests[-1].json["model"] == "llama3:8b"


async def test_models_list_with_model_patterns(llm: SimulatedLLM, sidecar_factory) -> None:
    sidecar = await sidecar_factory(policy(providers=[provider_for(llm, models=["gpt-*"])]))
    async with async_client(sidecar) as client:
        assert [model.id async for model in client.models.list()]
