# kws-research: every target installs the virtualenv first when it is missing.
#   make sweep                       Optuna sweep on the embedded synthetic data set
#   make test                        the whole test suite (TEST_WORKERS=2 pytest-xdist processes; what CI runs)
#   make test-fast                   the suite without the `slow` tests (real servers, SIGKILL, install, ...)
#   make docs                        the documentation site (MkDocs) into site/; make docs-serve to browse it
#   DATA=<folder>                    any folder in the Speech Commands layout (default: synthetic)
#   ARGS='<hydra overrides>'         more overrides for the stage, e.g. ARGS='trainer.epochs=5'
#   make install GPU=1               NVIDIA GPU (Linux): TensorFlow with CUDA instead of tensorflow-cpu;
#                                    the virtualenv remembers it (.venv/.gpu) for every later target

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DATA   ?=
ARGS   ?=
SWEEP  ?= quick
RUN_ID ?= best
SUBSET ?= ../shared/data/speech_commands_subset
SUBSET_COMMANDS ?= [yes,no,up,down,left,right,stop]

ifeq ($(strip $(DATA)),)
DATASET := dataset=synthetic
else
DATASET := dataset=speech_commands dataset.root=$(abspath $(DATA))
endif

.PHONY: install data baseline train sweep export ui test test-fast docs docs-serve bench bench-data bench-train \
        bench-accuracy bench-sweep bench-openset bench-stream bench-mining bench-calibration evaluate mine lint clean

install: $(STAMP)

# tensorflow-cpu and tensorflow both install the `tensorflow` package: the GPU build replaces it.
GPU    ?= $(if $(wildcard $(VENV)/.gpu),1,)
TF_GPU ?= tensorflow[and-cuda]>=2.21,<2.22
ifneq ($(strip $(GPU)),)
ifeq ($(wildcard $(VENV)/.gpu),)
.PHONY: $(STAMP)
endif
endif

# The editable install's one note (setuptools' "Editable installation" reminder, printed because
# conf/ and sweeps/ are mapped into the package) is silenced; every packaging warning still shows.
$(STAMP): pyproject.toml
	@echo "Installing kws-research into $(VENV): TensorFlow (CPU), Keras, coremltools, MLflow, Optuna, Hydra,"
	@echo "the espeak-ng and Piper data generators and the test tools (about 3 GB; 2-4 minutes, once)."
	@date +%s > /tmp/kws-install-start.$$PPID
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[synth,piper,dev]'
ifneq ($(strip $(GPU)),)
	$(PY) -m pip uninstall --quiet -y tensorflow-cpu
	$(PY) -m pip install --quiet '$(TF_GPU)'
	touch $(VENV)/.gpu
	$(PY) -c "import tensorflow as tf; print('GPUs:', tf.config.list_physical_devices('GPU'))"
endif
	@touch $(STAMP)
	@echo $$(( $$(date +%s) - $$(cat /tmp/kws-install-start.$$PPID) )) > $(VENV)/.install-seconds; rm -f /tmp/kws-install-start.$$PPID
	@echo "Installed: $$($(PY) -m pip list 2>/dev/null | wc -l) packages in $(VENV); every make target uses it."

data: $(STAMP)
	$(PY) -m kws_research.prepare $(DATASET) $(ARGS)

TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

lint: $(STAMP)
	$(PY) -m ruff check kws_research tests benchmarks
	$(PY) -m ruff format --check kws_research tests benchmarks

bench-data: $(STAMP)
	$(PY) -m benchmarks.bench_data --subset $(SUBSET) $(BENCH_ARGS)

clean:
	rm -rf .cache mlruns.db mlartifacts optuna.db benchmarks/results .multirun site

train: $(STAMP)
	$(PY) -m kws_research.train $(DATASET) $(ARGS)

baseline: $(STAMP)
	$(PY) -m kws_research.train +experiment=baseline $(DATASET) $(ARGS)

UI_PORT ?= 5000
# The store the stages use: MLFLOW_TRACKING_URI when set, else the default sqlite:///mlruns.db.
UI_STORE ?= $(or $(MLFLOW_TRACKING_URI),sqlite:///mlruns.db)
ui: $(STAMP)
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)/#/experiments?workflowType=machine_learning  (store: $(UI_STORE), artifacts: ./mlartifacts)"
	exec $(PY) -m mlflow ui --backend-store-uri '$(UI_STORE)' --default-artifact-root ./mlartifacts \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

bench-train: $(STAMP)
	$(PY) -m benchmarks.bench_train --data $(SUBSET) --model seed_cnn1d $(BENCH_ARGS)
	$(PY) -m benchmarks.bench_train --data $(SUBSET) --model tc_resnet $(BENCH_ARGS)
	$(PY) -m benchmarks.bench_frontend --data $(SUBSET) $(BENCH_ARGS)

bench-accuracy: $(STAMP)
	$(PY) -m benchmarks.bench_accuracy --data $(if $(DATA),$(DATA),$(SUBSET)) \
		--commands '$(if $(DATA),$(COMMANDS),$(SUBSET_COMMANDS))' $(BENCH_ARGS)

# The sweep's "where the time went" table shows the install when this make just did it.
sweep: $(STAMP)
	KWS_INSTALL_SECONDS=$$(cat $(VENV)/.install-seconds 2>/dev/null; rm -f $(VENV)/.install-seconds) \
		$(PY) -m kws_research.sweep sweep=$(SWEEP) $(DATASET) $(ARGS)

export: $(STAMP)
	$(PY) -m kws_research.export run_id=$(RUN_ID) $(ARGS)

evaluate: $(STAMP)
	$(PY) -m kws_research.evaluate run_id=$(RUN_ID) $(ARGS)

mine: $(STAMP)
	$(PY) -m kws_research.mine run_id=$(RUN_ID) $(ARGS)

bench-sweep: $(STAMP)
	$(PY) -m benchmarks.bench_sweep $(BENCH_ARGS)

bench: bench-data bench-train bench-accuracy bench-sweep bench-openset bench-stream bench-mining bench-calibration

bench-openset: $(STAMP)
	$(PY) -m benchmarks.bench_openset --data $(if $(DATA),$(DATA),$(SUBSET)) \
		--commands '$(if $(DATA),$(COMMANDS),$(SUBSET_COMMANDS))' $(BENCH_ARGS)

bench-mining: $(STAMP)
	$(PY) -m benchmarks.bench_mining --data $(if $(DATA),$(DATA),$(SUBSET)) \
		--commands '$(if $(DATA),$(COMMANDS),$(SUBSET_COMMANDS))' $(BENCH_ARGS)

bench-calibration: $(STAMP)
	$(PY) -m benchmarks.bench_calibration --data $(if $(DATA),$(DATA),$(SUBSET)) \
		--commands '$(if $(DATA),$(COMMANDS),$(SUBSET_COMMANDS))' $(BENCH_ARGS)

bench-stream: $(STAMP)
	$(PY) -m benchmarks.bench_scoring
	$(PY) -m benchmarks.bench_stream --data $(if $(DATA),$(DATA),$(SUBSET)) \
		--commands '$(if $(DATA),$(COMMANDS),$(SUBSET_COMMANDS))' $(BENCH_ARGS)
