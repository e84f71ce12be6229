"""RAG-quality metrics through ragas, for the report's ``ragas`` section.

Two kinds, because an LLM is not always at hand and costs money when it is:

- **ID-based context precision and recall** (always, no LLM): ragas'
  ``IDBasedContextPrecision`` / ``IDBasedContextRecall`` on each query's top-k
  retrieved chunk ids against its relevant ids, from the rankings the
  retrieval evaluation already made — so they cost nothing extra and cover
  every query. Precision is *relevant retrieved / k*: with one relevant chunk
  per query it tops out at ``1/k``; compare models with it, not with 1.
- **LLM-judged faithfulness, answer relevancy and context precision** (only
  when a LlamaIndex LLM is given): the LLM answers each sampled question from
  the model's top-k chunks, then ragas has the same LLM judge the answer
  (through ``LlamaIndexLLMWrapper``; answer relevancy also embeds questions
  through ``LlamaIndexEmbeddingsWrapper``). Each label is judged on the *same*
  sample of queries, so the labels' scores are comparable.

Usage::

    from ragtune.evaluation.ragas_eval import ragas_metrics
    report["ragas"] = ragas_metrics(dataset, {"base": base_result, "tuned": tuned_result},
                                    llm=OpenAI(model="gpt-4o-mini"))  # llm=None: ID-based only

ragas is an optional extra: ``pip install "ragtune[ragas]"``. ragas' usage
telemetry is switched off unless ``RAGAS_DO_NOT_TRACK`` is already set, since
ragtune promises to run offline.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ragtune.errors import ConfigError, RagtuneError
from ragtune.progress import Task, task
from ragtune.providers import not_installed

if TYPE_CHECKING:
    from ragtune.evaluation.datasets import RetrievalDataset
    from ragtune.evaluation.evaluator import EvalResult

log = logging.getLogger(__name__)

DEFAULT_K = 5
DEFAULT_MAX_QUERIES = 20

#: How the LLM is asked to answer from retrieved chunks (``{contexts}``, ``{question}``).
ANSWER_PROMPT = (
    "Answer the question using only the context below. If the context does not contain the answer, "
    "say that you do not know.\n\n"
    "Context:\n{contexts}\n\n"
    "Question: {question}\n"
    "Answer:"
)

#: Metric names as they appear in the report; the ID-based ones get ``@k`` appended.
ID_METRICS = ("id_context_precision", "id_context_recall")


def ragas_metrics(
    dataset: RetrievalDataset,
    results: Mapping[str, EvalResult],
    llm: Any | None = None,
    embed_model: Any | None = None,
    k: int = DEFAULT_K,
    max_queries: int = DEFAULT_MAX_QUERIES,
    seed: int = 0,
    concurrency: int = 4,
    coverage: dict[str, dict[str, dict[str, int]]] | None = None,
) -> dict[str, dict[str, float]]:
    """``label -> metric -> mean`` for each evaluated model, ready for ``report["ragas"]``.

    ``results`` are retrieval evaluations of ``dataset`` (their rankings at the
    full dimension are used). ``llm`` is a LlamaIndex LLM; without it only the
    ID-based metrics are computed. ``embed_model`` is a LlamaIndex embedding for
    answer relevancy (default: ragtune's bundled model). ``max_queries`` caps the
    seeded sample of queries the LLM answers and judges, per label.
    A metric no query could be scored on is left out (and logged), never NaN.
    ``coverage``, when given, is filled with ``label -> metric -> {"scored", "tried"}``:
    how many samples the judge could score, for the report to say so.
    """
    _check_args(k, max_queries, concurrency)
    ragas = _import_ragas()
    samples = {label: _retrieved(dataset, res, k, label) for label, res in results.items()}
    out: dict[str, dict[str, float]] = {label: {} for label in results}

    id_metrics = {f"{ID_METRICS[0]}@{k}": ragas.IDBasedContextPrecision(), f"{ID_METRICS[1]}@{k}": ragas.IDBasedContextRecall()}
    for label, rows in samples.items():
        ragas_samples = [
            ragas.SingleTurnSample(retrieved_context_ids=r.doc_ids, reference_context_ids=r.relevant) for r in rows
        ]
        for name, metric in id_metrics.items():
            scores = ragas.run(_score_all(metric, ragas_samples, concurrency))
            _store(out[label], name, scores, label, coverage)

    if llm is None:
        return out
    judge = _llm_judges(ragas, llm, embed_model)
    chosen = _sample_qids(sorted(dataset.queries), max_queries, seed)
    picked: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    # the answer and its scores depend only on the question and the ordered chunks
    # retrieved: labels that retrieve the same top-k (often, between hybrids) share
    # one answer and one judgement, which saves LLM calls without changing a score
    unique: dict[tuple[str, tuple[str, ...]], _Retrieved] = {}
    for label, rows in samples.items():
        by_qid = {r.qid: r for r in rows}
        picked[label] = [(q, tuple(by_qid[q].doc_ids)) for q in chosen if q in by_qid]
        for key in picked[label]:
            unique.setdefault(key, by_qid[key[0]])
    keys = list(unique)
    with task("Answering with the LLM", total=len(keys), unit="questions") as shown:
        answers = dict(zip(keys, ragas.run(_answer_all(llm, [unique[key] for key in keys], concurrency, shown))))
    answered = [key for key in keys if answers[key] is not None]
    llm_samples = [
        ragas.SingleTurnSample(user_input=unique[key].question, response=answers[key],
                               retrieved_contexts=unique[key].contexts)
        for key in answered
    ]
    for name, metric in judge.items():
        with task(f"Judging {name}", total=len(llm_samples), unit="samples") as shown:
            scores = dict(zip(answered, ragas.run(_score_all(metric, llm_samples, concurrency, shown))))
        for label, label_keys in picked.items():
            # a question the LLM could not answer counts as tried and not scored
            _store(out[label], name, [scores.get(key) for key in label_keys], label, coverage)
    return out


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Retrieved:
    """One query as ragas needs it: question, top-k ids and texts, relevant ids."""

    qid: str
    question: str
    doc_ids: list[str]
    contexts: list[str]
    relevant: list[str]


def _check_args(k: int, max_queries: int, concurrency: int) -> None:
    if not isinstance(k, int) or not 1 <= k <= 10:
        raise ConfigError(f"k={k!r}: give 1 to 10 (the evaluation keeps each query's top 10 chunks)")
    if not isinstance(max_queries, int) or max_queries < 1:
        raise ConfigError(f"max_queries={max_queries!r}: give a positive number of queries for the LLM to judge")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency={concurrency!r}: give at least 1 concurrent LLM call")


def _retrieved(dataset: RetrievalDataset, result: EvalResult, k: int, label: str) -> list[_Retrieved]:
    """Each query's top-k at the result's full dimension."""
    if not result.rankings:
        raise ConfigError(f"results[{label!r}] has no rankings; evaluate it with RetrievalEvaluator first")
    dim = max(result.rankings, key=int)
    ranking = result.rankings[dim]
    missing = [q for q in dataset.queries if q not in ranking]
    if missing:
        raise ConfigError(
            f"results[{label!r}] has no ranking for query {missing[0]!r} of dataset {dataset.name!r}; "
            "pass results evaluated on this same dataset"
        )
    rows = []
    for qid in sorted(dataset.queries):
        ids = [doc for doc, _ in ranking[qid][:k]]
        rows.append(
            _Retrieved(
                qid=qid,
                question=dataset.queries[qid],
                doc_ids=ids,
                contexts=[dataset.corpus[d] for d in ids],
                relevant=list(dataset.relevant[qid]),
            )
        )
    return rows


def _sample_qids(qids: Sequence[str], n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` query ids (all of them when there are fewer), in a stable order."""
    if len(qids) <= n:
        return list(qids)
    idx = np.random.default_rng(seed).choice(len(qids), size=n, replace=False)
    return [qids[i] for i in sorted(idx)]


# ---------------------------------------------------------------- ragas plumbing


class _Ragas:
    """The few ragas names used here, imported once and lazily (ragas is an optional extra)."""

    def __init__(self) -> None:
        os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ragas import metrics
            from ragas.async_utils import run
            from ragas.dataset_schema import SingleTurnSample
            from ragas.embeddings import LlamaIndexEmbeddingsWrapper
            from ragas.llms import LlamaIndexLLMWrapper
            from ragas.run_config import RunConfig

            # classic metrics: the only ones that accept the LlamaIndex wrappers
            self.IDBasedContextPrecision = metrics.IDBasedContextPrecision
            self.IDBasedContextRecall = metrics.IDBasedContextRecall
            self.Faithfulness = metrics.Faithfulness
            self.ResponseRelevancy = metrics.ResponseRelevancy
            self.LLMContextPrecisionWithoutReference = metrics.LLMContextPrecisionWithoutReference
        self.run = run
        self.SingleTurnSample = SingleTurnSample
        self.LlamaIndexLLMWrapper = LlamaIndexLLMWrapper
        self.LlamaIndexEmbeddingsWrapper = LlamaIndexEmbeddingsWrapper
        self.RunConfig = RunConfig


_RAGAS: _Ragas | None = None


def _import_ragas() -> _Ragas:
    global _RAGAS
    if _RAGAS is None:
        try:
            _RAGAS = _Ragas()
        except ImportError as exc:
            raise not_installed("ragas", where="scoring RAG quality with ragas", cause=exc, error=RagtuneError) from exc
    return _RAGAS


def _llm_judges(ragas: _Ragas, llm: Any, embed_model: Any | None) -> dict[str, Any]:
    """The LLM-judged metrics, wired to ``llm`` (and ``embed_model`` for answer relevancy)."""
    if not hasattr(llm, "acomplete"):
        raise ConfigError(f"llm={type(llm).__name__}: pass a LlamaIndex LLM (an object with complete/acomplete)")
    if embed_model is None:
        from ragtune.encoders.embedding import EncoderEmbedding
        from ragtune.encoders.encoder import Encoder

        embed_model = EncoderEmbedding(Encoder("default"), model_name="all-MiniLM-L6-v2")
    if not hasattr(embed_model, "get_query_embedding"):
        raise ConfigError(f"embed_model={type(embed_model).__name__}: pass a LlamaIndex embedding (BaseEmbedding)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        judge_llm = ragas.LlamaIndexLLMWrapper(llm)
        embeddings = ragas.LlamaIndexEmbeddingsWrapper(embed_model)
    judges = {
        "faithfulness": ragas.Faithfulness(llm=judge_llm),
        # strictness=1: LlamaIndex LLMs return one completion per call, not ragas' default 3
        "answer_relevancy": ragas.ResponseRelevancy(llm=judge_llm, embeddings=embeddings, strictness=1),
        "llm_context_precision": ragas.LLMContextPrecisionWithoutReference(llm=judge_llm),
    }
    # ragas' defaults retry a failed judgement 10 times with backoff up to 60 s: minutes of
    # sleeping per sample when a small judge writes something unreadable (it will do the same
    # again), while LlamaIndex's LLM clients already retry transport errors and rate limits
    config = ragas.RunConfig(max_retries=2, max_wait=2)
    for metric in judges.values():
        metric.init(config)
    return judges


async def _bounded(
    jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int, shown: Task | None = None
) -> list[Any]:
    """Run ``jobs`` with at most ``concurrency`` in flight; a failed job yields None.

    ``shown``: the progress task advanced as each job ends (a local judge takes minutes).

    Failures are logged once per batch (how many, and the first reason), not once per
    sample: a judge that cannot answer at all would otherwise fill the console.
    """
    import asyncio

    gate = asyncio.Semaphore(concurrency)
    errors: list[BaseException] = []

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            try:
                return await job()
            except Exception as exc:  # noqa: BLE001 - one bad LLM reply must not sink the whole evaluation
                errors.append(exc)
                log.debug("ragas: a sample failed (%s: %s)", type(exc).__name__, exc)
                return None
            finally:
                if shown is not None:
                    shown.advance()

    out = await asyncio.gather(*(one(j) for j in jobs))
    if errors:
        first = str(errors[0]).strip().splitlines()[0][:300] if str(errors[0]).strip() else ""
        log.warning("ragas: %d of %d samples failed (first: %s: %s)", len(errors), len(jobs), type(errors[0]).__name__, first)
    return out


async def _score_all(
    metric: Any, samples: Sequence[Any], concurrency: int, shown: Task | None = None
) -> list[float | None]:
    return await _bounded([lambda s=s: metric.single_turn_ascore(s) for s in samples], concurrency, shown)


async def _answer_all(
    llm: Any, rows: Sequence[_Retrieved], concurrency: int, shown: Task | None = None
) -> list[str | None]:
    async def answer(row: _Retrieved) -> str:
        prompt = ANSWER_PROMPT.format(contexts="\n\n".join(row.contexts), question=row.question)
        return str((await llm.acomplete(prompt)).text).strip()

    return await _bounded([lambda r=r: answer(r) for r in rows], concurrency, shown)


def _store(
    into: dict[str, float],
    name: str,
    scores: Sequence[float | None],
    label: str,
    coverage: dict[str, dict[str, dict[str, int]]] | None = None,
) -> None:
    """Mean of the finite scores; a metric with none is left out, with the reason logged."""
    finite = [float(s) for s in scores if s is not None and math.isfinite(float(s))]
    if coverage is not None:
        coverage.setdefault(label, {})[name] = {"scored": len(finite), "tried": len(scores)}
    if not finite:
        log.warning("ragas: %s for %r: no sample could be scored (%d tried); left out", name, label, len(scores))
        return
    if len(finite) < len(scores):
        log.warning("ragas: %s for %r: %d of %d samples could not be scored", name, label, len(scores) - len(finite), len(scores))
    into[name] = float(np.mean(finite))
