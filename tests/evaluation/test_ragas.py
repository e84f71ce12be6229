"""ragas metrics: ID-based context precision/recall (no LLM) and the LLM-judged path.

No LLM runs here. The LLM path uses small deterministic LlamaIndex
``CustomLLM`` classes defined below: they answer from the retrieved context
(one faithfully, one with an invented claim) and, for ragas' judge prompts,
reply with JSON in the shape of ragas' own output models, judging by plain
substring checks. So the numbers are known in advance and the test checks the
whole path: answer generation, ragas' prompts and output parsers, the
LlamaIndex wrappers, averaging, and the report rendering.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback

from ragtune.errors import ConfigError
from ragtune.evaluation import RetrievalDataset
from ragtune.evaluation.evaluator import EvalResult
from ragtune.evaluation.ragas_eval import ANSWER_PROMPT, ragas_metrics  # imports ragas lazily
from ragtune.report.html import render_html
from ragtune.report.markdown import render_markdown

pytest.importorskip("ragas", reason='ragas is an optional extra: pip install "ragtune[ragas]"')

CORPUS = {
    "night": "After 23:00 the night tram runs every 30 minutes. Night trams stop on request.",
    "fares": "A monthly pass costs 58 euros. Students pay 29 euros.",
    "depot": "The fleet is maintained at the Eastfield depot. The depot opened in 2004.",
    "bikes": "Bicycles can be taken on board outside rush hours.",
    "lost": "Lost items are kept for 30 days at the Quay Street office.",
    "history": "The line opened in 1998. The mayor drove the first tram.",
}
QUERIES = {
    "q1": "How often does the night tram run?",
    "q2": "What does a monthly pass cost?",
    "q3": "Where is the fleet maintained?",
}
RELEVANT = {"q1": {"night": 1}, "q2": {"fares": 1, "history": 1}, "q3": {"depot": 1}}


def result(label: str, rankings: dict[str, list[str]]) -> EvalResult:
    """An evaluation result with the given top documents per query (scores descending)."""
    ranked = {q: [(d, 1.0 - 0.1 * i) for i, d in enumerate(docs)] for q, docs in rankings.items()}
    return EvalResult(label=label, metrics={"384": {}}, per_query={}, rankings={"384": ranked}, qids=sorted(rankings))


@pytest.fixture(scope="module")
def dataset() -> RetrievalDataset:
    return RetrievalDataset("hand", dict(QUERIES), dict(CORPUS), {q: dict(r) for q, r in RELEVANT.items()})


# Top 5 per query. good: every relevant doc first; poor: q1 finds its doc at rank 4, q2 one of two, q3 none.
GOOD = {"q1": ["night", "fares", "depot", "bikes", "lost"],
        "q2": ["fares", "history", "night", "depot", "bikes"],
        "q3": ["depot", "night", "fares", "bikes", "lost"]}
POOR = {"q1": ["fares", "depot", "bikes", "night", "lost"],
        "q2": ["history", "night", "depot", "bikes", "lost"],
        "q3": ["night", "fares", "bikes", "lost", "history"]}


def test_id_based_precision_and_recall_known_values(dataset):
    scores = ragas_metrics(dataset, {"base": result("base", POOR), "tuned": result("tuned", GOOD)}, k=5)
    # precision = relevant among the top 5 / 5; recall = relevant found / relevant
    assert scores["tuned"]["id_context_precision@5"] == pytest.approx(np.mean([1 / 5, 2 / 5, 1 / 5]))
    assert scores["tuned"]["id_context_recall@5"] == pytest.approx(1.0)
    assert scores["base"]["id_context_precision@5"] == pytest.approx(np.mean([1 / 5, 1 / 5, 0]))
    assert scores["base"]["id_context_recall@5"] == pytest.approx(np.mean([1, 1 / 2, 0]))
    assert set(scores["base"]) == {"id_context_precision@5", "id_context_recall@5"}  # no LLM, no LLM metrics


def test_k_cuts_the_ranking(dataset):
    scores = ragas_metrics(dataset, {"base": result("base", POOR)}, k=1)
    # at k=1 only q2's "history" is relevant
    assert scores["base"]["id_context_precision@1"] == pytest.approx(1 / 3)
    assert scores["base"]["id_context_recall@1"] == pytest.approx((0 + 1 / 2 + 0) / 3)


@pytest.mark.parametrize("kwargs,field", [({"k": 0}, "k=0"), ({"k": 11}, "k=11"), ({"max_queries": 0}, "max_queries=0")])
def test_bad_arguments_name_the_field(dataset, kwargs, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        ragas_metrics(dataset, {"base": result("base", GOOD)}, **kwargs)


def test_missing_ragas_names_the_extra(dataset, monkeypatch):
    import sys

    from ragtune.errors import RagtuneError
    from ragtune.evaluation import ragas_eval

    monkeypatch.setattr(ragas_eval, "_RAGAS", None)
    monkeypatch.setitem(sys.modules, "ragas", None)  # makes "import ragas..." fail as if not installed
    with pytest.raises(RagtuneError, match=re.escape('pip install "ragtune[ragas]"')):
        ragas_metrics(dataset, {"base": result("base", GOOD)})


def test_results_from_another_dataset_are_refused(dataset):
    partial = result("base", {"q1": GOOD["q1"]})
    with pytest.raises(ConfigError, match=r"results\['base'\] has no ranking for query 'q2'"):
        ragas_metrics(dataset, {"base": partial})


# ---------------------------------------------------------------- the LLM path


def _last_input(prompt: str) -> dict[str, Any] | None:
    """The JSON input ragas puts after its examples: '... following input\\ninput: {...}\\nOutput: '."""
    m = re.search(r"Now perform the same with the following input\s*input: (\{.*\})\s*Output:\s*$", prompt, re.DOTALL)
    return json.loads(m.group(1)) if m else None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9:. ]", " ", text.lower()).split())


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


class JudgeLLM(CustomLLM):
    """Deterministic stand-in for an LLM: answers from the first context sentence, judges by substring.

    - ragtune's answer prompt → the first sentence of the first retrieved chunk;
    - ragas statement generation (``question``, ``answer``) → the answer's sentences;
    - ragas NLI (``context``, ``statements``) → verdict 1 when the statement occurs in the context;
    - ragas response relevance (``response``) → a question made from the answer, noncommittal 0;
    - ragas context precision (``question``, ``context``, ``answer``) → 1 when the answer occurs in the context.
    """

    prompts: list[str] = Field(default_factory=list, description="every prompt received, in order")

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="judge-stub", context_window=32000, num_output=512)

    def answer(self, contexts: str) -> str:
        return _sentences(contexts.split("\n\n")[0])[0]

    def reply(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if prompt.startswith(ANSWER_PROMPT.split("{")[0]):
            contexts = prompt.split("Context:\n", 1)[1].split("\n\nQuestion:", 1)[0]
            return self.answer(contexts)
        data = _last_input(prompt)
        if data is None:
            raise AssertionError(f"unexpected prompt:\n{prompt[-500:]}")
        keys = set(data)
        if keys == {"question", "answer"}:
            return json.dumps({"statements": _sentences(data["answer"])})
        if keys == {"context", "statements"}:
            ctx = _norm(data["context"])
            return json.dumps({"statements": [
                {"statement": s, "reason": "substring check", "verdict": int(_norm(s).rstrip(".") in ctx)}
                for s in data["statements"]]})
        if keys == {"response"}:
            return json.dumps({"question": f"What is true about this: {data['response']}", "noncommittal": 0})
        if keys == {"question", "context", "answer"}:
            useful = _norm(data["answer"]).rstrip(".") in _norm(data["context"])
            return json.dumps({"reason": "substring check", "verdict": int(useful)})
        raise AssertionError(f"unexpected ragas prompt input keys {sorted(keys)}")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.reply(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self.reply(prompt)
        yield CompletionResponse(text=text, delta=text)


class LiarLLM(JudgeLLM):
    """The same judge, but its answers make a claim no retrieved chunk supports."""

    def answer(self, contexts: str) -> str:
        return "The trams are painted purple and run on the moon."


@pytest.fixture(scope="module")
def embed_model(model_path):
    from llama_index.embeddings.ragtune import RagtuneEmbedding

    return RagtuneEmbedding(model_path=model_path)


def test_llm_metrics_are_finite_and_in_range(dataset, embed_model):
    llm = JudgeLLM()
    scores = ragas_metrics(dataset, {"base": result("base", POOR), "tuned": result("tuned", GOOD)},
                           llm=llm, embed_model=embed_model, k=5, max_queries=2)
    for label in ("base", "tuned"):
        assert set(scores[label]) == {"id_context_precision@5", "id_context_recall@5",
                                      "faithfulness", "answer_relevancy", "llm_context_precision"}
        for name, value in scores[label].items():
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (label, name, value)
        # answers quote the first retrieved chunk: fully supported, and that chunk was the useful one
        assert scores[label]["faithfulness"] == pytest.approx(1.0)
        assert scores[label]["llm_context_precision"] == pytest.approx(1.0)
    # the poor ranking puts a wrong chunk first, so its answer is about something else
    assert scores["tuned"]["answer_relevancy"] > scores["base"]["answer_relevancy"]
    # max_queries=2: each label answered 2 questions (the same 2), then ragas judged them
    answers = [p for p in llm.prompts if p.startswith("Answer the question")]
    assert len(answers) == 4
    asked = [p.split("Question: ")[1].split("\n")[0] for p in answers]
    assert sorted(asked[:2]) == sorted(asked[2:])


def test_labels_that_retrieve_the_same_chunks_share_one_answer_and_judgement(dataset, embed_model):
    """Two hybrids often retrieve the same top-k: the judge answers and scores it once (a local
    LLM takes seconds a call), and each label still gets the same scores as when judged alone."""
    llm = JudgeLLM()
    same_q1 = {**POOR, "q1": GOOD["q1"]}  # agrees with GOOD on q1 only
    scores = ragas_metrics(dataset, {"a": result("a", GOOD), "b": result("b", GOOD), "c": result("c", same_q1)},
                           llm=llm, embed_model=embed_model, max_queries=3)
    answers = [p for p in llm.prompts if p.startswith("Answer the question")]
    assert len(answers) == 5  # a and b: 3 shared; c: q1 shared, q2 and q3 its own
    assert scores["a"] == scores["b"]
    alone = ragas_metrics(dataset, {"c": result("c", same_q1)}, llm=JudgeLLM(), embed_model=embed_model,
                          max_queries=3)
    assert scores["c"] == pytest.approx(alone["c"])


def test_unfaithful_answers_score_lower(dataset, embed_model):
    results = {"tuned": result("tuned", GOOD)}
    honest = ragas_metrics(dataset, results, llm=JudgeLLM(), embed_model=embed_model, max_queries=3)["tuned"]
    liar = ragas_metrics(dataset, results, llm=LiarLLM(), embed_model=embed_model, max_queries=3)["tuned"]
    assert honest["faithfulness"] == pytest.approx(1.0)
    assert liar["faithfulness"] == pytest.approx(0.0)
    assert liar["llm_context_precision"] < honest["llm_context_precision"]
    assert liar["id_context_recall@5"] == honest["id_context_recall@5"]  # retrieval is the same


def test_ragas_section_in_report(dataset):
    scores = ragas_metrics(dataset, {"base": result("base", POOR), "tuned": result("tuned", GOOD)})
    report = {"dataset": {"name": "hand"}, "ragas": scores}
    md = render_markdown(report)
    assert "## RAG quality (ragas)" in md
    assert "| tuned | 0.267 | 1.000 |" in md
    page = render_html(report)
    assert "RAG quality (ragas)" in page and "id_context_recall@k" in page and "LLM-judged" not in page


class MumblerLLM(JudgeLLM):
    """The same judge, but on every other faithfulness verdict it answers prose ragas cannot read."""

    calls: int = 0

    def reply(self, prompt: str) -> str:
        data = _last_input(prompt)
        if data is not None and set(data) == {"context", "statements"}:
            self.calls += 1
            if self.calls % 2 == 0:
                self.prompts.append(prompt)
                return "The statements look mostly right to me."
        return super().reply(prompt)


def test_samples_the_judge_cannot_score_are_counted_and_reported(dataset, embed_model):
    """A small judge's unreadable answers are never a NaN mean: the metric averages what was scored,
    and the coverage (scored of tried) reaches the report's Markdown and HTML."""
    coverage: dict = {}
    scores = ragas_metrics(dataset, {"tuned": result("tuned", GOOD)}, llm=MumblerLLM(), embed_model=embed_model,
                           max_queries=3, coverage=coverage)
    faith = coverage["tuned"]["faithfulness"]
    assert faith["tried"] == 3 and 0 < faith["scored"] < 3, coverage
    assert math.isfinite(scores["tuned"]["faithfulness"])
    assert coverage["tuned"]["answer_relevancy"] == {"scored": 3, "tried": 3}
    report = {"dataset": {"name": "hand"}, "ragas": scores, "ragas_scored": coverage}
    line = f"tuned faithfulness: the judge scored {faith['scored']} of 3 samples (mean of {faith['scored']})."
    assert line in render_markdown(report) and line in render_html(report)
    assert "answer_relevancy: the judge" not in render_markdown(report)
