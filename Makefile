# The two commands of the README: `make serve` and `make test` (+ lint, bench).
# Everything a fresh machine needs is installed here: the virtualenv, and, when run as
# root, the Debian packages that the tests drive as real peers.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ./data
# ARCHITECTURE §1: never let the working directory shadow dnspython's `dns` package.
export PYTHONSAFEPATH := 1

# Debian packages the test suite uses as real peers and clients.
TEST_DEBIAN_PACKAGES := postgresql swaks dovecot-imapd postfix chromium isync mutt curl dovecot-pop3d dovecot-lmtpd

.PHONY: serve test lint venv system-packages bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

serve: venv
	@test -f $(DATA)/courriel.toml || $(BIN)/courriel init --data $(DATA)
	$(BIN)/courriel serve --dev --data $(DATA)

system-packages:
	@sh .ci/system-packages $(TEST_DEBIAN_PACKAGES)

lint: venv
	$(BIN)/ruff check .

test: venv system-packages lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Courriel and a private Postfix + Dovecot under the same mailbench run (../shared/bench);
# the peers need root. Results in ./bench-out (BENCH_ARGS="--out DIR --messages N ...").
bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
