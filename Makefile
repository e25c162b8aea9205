# sip-sms-bridge: `make run` starts the daemon on the example config; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEBIAN_PACKAGES := kamailio kamailio-utils-modules sip-tester systemd baresip-core linphone-cli \
                   chromium chromium-driver postgresql

.PHONY: run test lint bench debian-packages clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.runtime
	$(BIN)/sip-sms-bridge run --config config/bridge.example.toml

# The tests need real peers: Kamailio (PBX), sipp (SIP traffic), systemd-analyze (unit check),
# baresip and linphonec (softphones), headless Chromium and its driver (console browser tests),
# PostgreSQL (the shared store): tests only; `make run` needs none of them.
debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

test: debian-packages $(VENV)/.test
	$(BIN)/ruff check bridge tests bench
	$(BIN)/pytest

lint: $(VENV)/.test
	$(BIN)/ruff check bridge tests bench

# Throughput, latency, CPU and memory on loopback, side by side with the do-it-yourself Kamailio
# bridge (bench/peer/) in the same run (about 10 minutes; --quick about 2), then one bridge on
# SQLite against two on PostgreSQL (bench/scale_out.py, about 1 minute). Not part of the tests.
# BENCH_ARGS: e.g. --quick, --durability full normal, --json results.json (see bench/run.py).
bench: debian-packages $(VENV)/.test
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.scale_out

clean:
	rm -rf $(VENV) state .pytest_cache .ruff_cache
