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

# The exporter's targets are compiled as SwiftPM would, module by module (instrumented for
# coverage and with testing enabled, so the harness reaches internal API), then linked with the
# harness and one entry point per fuzzer.
modules="$out/modules"
mkdir -p "$modules"
cat > "$modules/module.modulemap" <<MAP
module CGlibcShims {
  header "$PWD/Sources/CGlibcShims/include/CGlibcShims.h"
  export *
}
module CGnuTLSShims {
  header "$PWD/Sources/CGnuTLSShims/include/CGnuTLSShims.h"
  export *
}
MAP
includes=(-I "$modules" -I Sources/CYAML -I Sources/CMicroHTTPD -I Sources/CCrypt -I Sources/CZlib $(pkg-config --cflags-only-I yaml-0.1))
flags=(-swift-version 6 -sanitize=fuzzer,address -O -enable-testing -package-name prometheus_barman_exporter -parse-as-library "${includes[@]}")
clang -c -O1 -fsanitize=fuzzer-no-link,address -I Sources/CGlibcShims/include Sources/CGlibcShims/shims.c -o "$out/CGlibcShims.o"
clang -c -O1 -fsanitize=fuzzer-no-link,address -I Sources/CGnuTLSShims/include Sources/CGnuTLSShims/records.c -o "$out/CGnuTLSShims.o"
objects=("$out/CGlibcShims.o" "$out/CGnuTLSShims.o")
module() {  # NAME DIRECTORY
  swiftc "${flags[@]}" -wmo -module-name "$1" -emit-module -emit-module-path "$modules/$1.swiftmodule" \
    -c $(find "$2" -name '*.swift' | sort) -o "$out/$1.o" 2>&1 | grep -v "Cannot export local symbol" || true
  test -f "$out/$1.o"
  objects+=("$out/$1.o")
}
module Platform Sources/Platform
module Exposition Sources/Exposition
module Configuration Sources/Configuration
module Barman Sources/Barman
module Exporter Sources/Exporter

build() {  # NAME ENTRY
  swiftc "${flags[@]}" -module-name ExporterFuzz -lyaml -lmicrohttpd -lgnutls -lcrypt -lz \
    "${objects[@]}" Tests/ExporterTests/FuzzHarness.swift "$2" -o "$out/$1" 2>&1 | grep -v "Cannot export local symbol" || true
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
