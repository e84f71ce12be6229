# Two commands do all the set-up on a fresh machine (Python >= 3.10):
#   make demo   — install into .venv, then run the whole job on the sample corpus
#   make test   — install into .venv, then run the test suite
.PHONY: demo test setup slow-test

setup:
	bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/ragtune run examples/sample_corpus --workdir runs/demo

test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -n 3 --dist loadscope

slow-test: setup
	RAGTUNE_SLOW=1 HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -m slow
