"""ragtune: fine-tune the retriever of a RAG pipeline on your own corpus.

The pipeline is a chain of stages, each a function from one typed artifact to
the next, every artifact written into a run directory:

    corpus -> chunks -> pairs -> model -> Qdrant index -> evaluation -> report

Import the stage you need (``ragtune.corpus.reader``, ``ragtune.pairs``,
``ragtune.train``, ``ragtune.index.chunk_index``, ``ragtune.evaluation``,
``ragtune.report``) or run them all with :func:`ragtune.pipeline.stages.run_pipeline`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
