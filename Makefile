# prometheus-barman-exporter. `make run` and `make test` are the README's two commands.
SWIFT ?= swift
BINARY := .build/release/prometheus-barman-exporter
DEBUG_BINARY := .build/debug/prometheus-barman-exporter

.PHONY: run build release test unit-test exposition-test lifecycle-test web-test fuzz soak e2e fixtures deb deb-trixie systemd-test bench clean

## run: install build dependencies, build in release mode, serve the mock integration on 127.0.0.1:9780
run: release
	$(BINARY) -config examples/mock.yaml

release:
	scripts/install-deps.sh build
	$(SWIFT) build -c release

build:
	scripts/install-deps.sh build
	$(SWIFT) build

## test: install everything the tests use, then run every test: unit tests, promtool check, lifecycle,
## TLS and basic auth with curl and openssl, password guessing against a scraper,
## fuzzing (30 s per target), soak (300 refreshes), the Debian 12 package and the Debian 13 one (built
## in a clean trixie chroot with Debian's swiftlang), each under systemd in a container of its release,
## end-to-end with PostgreSQL and barman
test:
	scripts/install-deps.sh test
	$(SWIFT) build --build-tests
	$(SWIFT) test
	BINARY=$(DEBUG_BINARY) scripts/check-exposition.sh
	BINARY=$(DEBUG_BINARY) scripts/check-examples.sh
	BINARY=$(DEBUG_BINARY) python3 scripts/test_lifecycle.py
	BINARY=$(DEBUG_BINARY) python3 scripts/test_web.py
	BINARY=$(DEBUG_BINARY) python3 scripts/test_auth_flood.py
	scripts/fuzz.sh 30
	BINARY=$(DEBUG_BINARY) python3 scripts/soak.py
	scripts/build-deb.sh
	scripts/build-deb-chroot.sh
	scripts/test-systemd.sh bookworm
	scripts/test-systemd.sh trixie
	scripts/test-deb.sh install
	BINARY=$(DEBUG_BINARY) E2E_INSTALLED_BINARY=/usr/bin/prometheus-barman-exporter scripts/e2e.sh
	scripts/test-deb.sh purge

unit-test:
	$(SWIFT) test

exposition-test:
	BINARY=$(DEBUG_BINARY) scripts/check-exposition.sh

fuzz:
	scripts/fuzz.sh 300

soak:
	BINARY=$(DEBUG_BINARY) python3 scripts/soak.py

lifecycle-test:
	BINARY=$(DEBUG_BINARY) python3 scripts/test_lifecycle.py

web-test:
	BINARY=$(DEBUG_BINARY) python3 scripts/test_web.py
	BINARY=$(DEBUG_BINARY) python3 scripts/test_auth_flood.py

e2e:
	BINARY=$(DEBUG_BINARY) scripts/e2e.sh

# Re-captures the unit tests' barman fixtures (Tests/ExporterTests/Fixtures/e2e/<version>/) from
# the real barman runs of the end-to-end test.
fixtures: build
	BINARY=$(DEBUG_BINARY) E2E_CAPTURE=$(CURDIR)/Tests/ExporterTests/Fixtures/e2e scripts/e2e.sh

## systemd-test: each release's Debian package under a real systemd in a container of that release
## (docs/operations.md)
systemd-test:
	scripts/install-deps.sh test
	[ -n "$$(ls .build-tools/deb/prometheus-barman-exporter_*_amd64.deb 2>/dev/null)" ] || scripts/build-deb.sh
	[ -n "$$(ls .build-tools/deb-trixie/prometheus-barman-exporter_*_amd64.deb 2>/dev/null)" ] || scripts/build-deb-chroot.sh
	scripts/test-systemd.sh bookworm
	scripts/test-systemd.sh trixie

## deb: build the Debian 12 package (dpkg-buildpackage -us -uc -b, Swift from PATH) into .build-tools/deb/
deb:
	scripts/build-deb.sh

## deb-trixie: build the Debian 13 package in a clean trixie chroot with Debian's own swiftlang,
## as a Debian builder would, into .build-tools/deb-trixie/
deb-trixie:
	scripts/install-deps.sh test
	scripts/build-deb-chroot.sh

## bench: performance figures (docs/performance.md): ours vs the Python exporter vs nginx
bench:
	scripts/bench.sh

clean:
	rm -rf .build .build-tools
