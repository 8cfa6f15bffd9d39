#!/usr/bin/env bash
# Coverage-guided fuzzing of the config loader, the web config loader and the barman JSON decoders with libFuzzer
# (swiftc -sanitize=fuzzer,address). Seeds: Fuzz/corpus/ and the real barman captures in
# Tests/ExporterTests/Fixtures. A crash is saved under Fuzz/regressions/<target>/ — commit it:
# the unit tests replay every file there (FuzzRegressionTests).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
out=.build-fuzz
mkdir -p "$out"

# The fuzzers need only the config and decoding code, not the HTTP server or process runner.
sources=(
  Sources/Exporter/Config/*.swift
  Sources/Exporter/Web/WebConfig.swift Sources/Exporter/Web/WebConfigLoader.swift Sources/Exporter/Web/Bcrypt.swift
  Sources/Exporter/HTTP/TLSCredentials.swift
  Sources/Exporter/Barman/JSON.swift Sources/Exporter/Barman/BarmanDecoding.swift Sources/Exporter/Barman/BarmanCommand.swift
  Sources/Exporter/Barman/ServerName.swift Sources/Exporter/Barman/ServerInfo.swift
  Sources/Exporter/Barman/BarmanTime.swift Sources/Exporter/Barman/WALCatalog.swift
  Sources/Exporter/Metrics/*.swift
  Sources/Exporter/Runtime/Logger.swift Sources/Exporter/System/WallClock.swift Sources/Exporter/System/Files.swift
  Sources/Exporter/System/SystemCall.swift Sources/Exporter/System/ProcessStatistics.swift
  Tests/ExporterTests/FuzzHarness.swift
)
build() {  # NAME ENTRY
  swiftc -sanitize=fuzzer,address -parse-as-library -D FUZZING -module-name ExporterFuzz -O \
    -I Sources/CYAML -I Sources/CMicroHTTPD -I Sources/CCrypt $(pkg-config --cflags-only-I yaml-0.1) \
    -lyaml -lmicrohttpd -lgnutls -lcrypt \
    "${sources[@]}" "$2" -o "$out/$1" 2>&1 | grep -v "Cannot export local symbol" || true
  test -x "$out/$1"
}

failed=0
run() {  # NAME SEED_DIRS...
  local name=$1; shift
  local work="$out/corpus-$name" crashes="Fuzz/regressions/$name"
  mkdir -p "$work" "$crashes"
  echo "fuzz: $name for ${seconds}s"
  if ! "$out/fuzz-$name" "$work" "$@" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$crashes/" -print_final_stats=1 > "$out/$name.log" 2>&1; then
    failed=$((failed + 1))
    echo "fuzz: $name found a crash; the input is in $crashes/ (add it to git):"
    tail -30 "$out/$name.log"
  else
    grep -E "^(stat::number_of_executed_units|Done)" "$out/$name.log" || tail -2 "$out/$name.log"
  fi
}

build fuzz-config Fuzz/ConfigFuzzer.swift
build fuzz-json Fuzz/JSONFuzzer.swift
build fuzz-web Fuzz/WebConfigFuzzer.swift
run config Fuzz/corpus/config Fuzz/regressions/config
run json Fuzz/corpus/json Fuzz/regressions/json Tests/ExporterTests/Fixtures/3.4.0 Tests/ExporterTests/Fixtures/3.20.1 \
  Tests/ExporterTests/Fixtures/e2e/3.4.0 Tests/ExporterTests/Fixtures/e2e/3.19.1
run web Fuzz/corpus/web Fuzz/regressions/web
echo "fuzz: $((3 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
