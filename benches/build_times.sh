#!/usr/bin/env bash
# Build-time figures of BENCHMARKS.md (issue 5, item 5), in scratch dirs under $SCRATCH:
#
# 1. clean `cargo build --release -p dual-mode-derive` vs `-p serde_derive` (each with its own
#    dependencies: proc-macro2, quote, syn), and the crate alone (its dependencies built);
# 2. `cargo check` of a scratch crate with 200 `#[derive(DualMode)]` services vs the same 200
#    written by hand. The hand-written file is the derive's own output for one service (taken
#    with `-Zunpretty=expanded` through RUSTC_BOOTSTRAP, the serde/Clone/Debug derives on the
#    spec kept as derives), repeated with the names changed, so both crates declare exactly the
#    same items.
#
# Usage: benches/build_times.sh            (RUNS=3 N=200 SCRATCH=/tmp/dual-mode-build-times)
# Runs sequentially; medians of $RUNS. Needs the crates in ~/.cargo (runs cargo --offline).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${SCRATCH:-/tmp/dual-mode-build-times}
RUNS=${RUNS:-3}
N=${N:-200}
mkdir -p "$SCRATCH"

ms_now() { date +%s%N; }
# Prints the milliseconds `$@` took (its output discarded; fails loudly).
time_ms() {
  local start end
  start=$(ms_now)
  "$@" >"$SCRATCH/last.log" 2>&1 || { cat "$SCRATCH/last.log"; exit 1; }
  end=$(ms_now)
  echo $(((end - start) / 1000000))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rustc: $(rustc --version)"

# --- 1. clean release builds of the derive crates --------------------------------------------
declare -A CLEAN ALONE
for krate in dual-mode-derive serde_derive; do
  target="$SCRATCH/target-$krate"
  clean=() alone=()
  for _ in $(seq "$RUNS"); do
    rm -rf "$target"
    clean+=("$(cd "$ROOT" && CARGO_TARGET_DIR="$target" time_ms cargo build --offline --release -p "$krate")")
    (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo clean --offline --release -p "$krate" >/dev/null 2>&1)
    alone+=("$(cd "$ROOT" && CARGO_TARGET_DIR="$target" time_ms cargo build --offline --release -p "$krate")")
  done
  CLEAN[$krate]=$(printf '%s\n' "${clean[@]}" | median)
  ALONE[$krate]=$(printf '%s\n' "${alone[@]}" | median)
  echo "$krate: clean build (with deps) runs ${clean[*]} ms, median $(secs "${CLEAN[$krate]}"); crate alone runs ${alone[*]} ms, median $(secs "${ALONE[$krate]}")"
done

# --- 2. 200 derived services vs the same 200 written by hand ---------------------------------
GEN="$SCRATCH/gen"
mkdir -p "$GEN"
cp "$ROOT/Cargo.lock" "$GEN/Cargo.lock.template"
for name in one derived hand; do
  mkdir -p "$GEN/$name/src"
  cat >"$GEN/$name/Cargo.toml" <<EOF
[package]
name = "gen-$name"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
dual-mode = { path = "$ROOT" }
serde = { version = "1", features = ["derive"] }
reqwest = { version = "0.13", default-features = false }
redis = { version = "1", default-features = false, features = ["aio", "tokio-comp"] }

[workspace]
EOF
  cp "$GEN/Cargo.lock.template" "$GEN/$name/Cargo.lock"
done

service() { # $1: the service's name
  cat <<EOF
#[derive(dual_mode::DualMode)]
pub struct $1 {
    pub url: String,
    pub redis_url: String,
    pub retries: u32,
    #[dual_mode(shared)]
    pub http: reqwest::Client,
    #[dual_mode(shared, config = redis_url)]
    pub redis: redis::aio::MultiplexedConnection,
}

EOF
}

{
  echo '#![allow(missing_docs, dead_code)]'
  for i in $(seq 0 $((N - 1))); do service "Svc$i"; done
} >"$GEN/derived/src/lib.rs"
service Svc0 >"$GEN/one/src/lib.rs"

export CARGO_TARGET_DIR="$SCRATCH/target-gen"
(cd "$GEN/one" && RUSTC_BOOTSTRAP=1 cargo rustc --offline --profile=check -- -Zunpretty=expanded >"$GEN/one.expanded.rs" 2>"$SCRATCH/last.log") \
  || { cat "$SCRATCH/last.log"; exit 1; }

python3 - "$GEN/one.expanded.rs" "$GEN/hand/src/lib.rs" "$N" <<'EOF'
import re, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src).read()
# What the derive added after the spec's serde impls: the parts struct and every impl.
start = text.rindex('#[doc', 0, text.index('pub struct Svc0Parts'))
generated = text[start:]
spec = re.search(r'pub struct Svc0Spec \{.*?\n\}', text, re.S).group(0)
service = re.search(r'pub struct Svc0 \{.*?\n\}', text, re.S).group(0)
service = re.sub(r'\n\s*#\[dual_mode\([^\n]*\)\]', '', service)
one = (
    service + '\n\n'
    + '#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]\n'
    + '#[serde(crate = "::dual_mode::__private::serde")]\n'
    + spec + '\n\n' + generated + '\n'
)
with open(out, 'w') as f:
    f.write('#![allow(missing_docs, dead_code)]\n')
    for i in range(n):
        f.write(re.sub(r'Svc0(?![0-9])', f'Svc{i}', one))
EOF
echo "generated: $(wc -l <"$GEN/derived/src/lib.rs") lines derived, $(wc -l <"$GEN/hand/src/lib.rs") lines by hand"

declare -A CHECK
for name in derived hand; do
  (cd "$GEN/$name" && cargo check --offline >"$SCRATCH/last.log" 2>&1) || { cat "$SCRATCH/last.log"; exit 1; }
done
for name in derived hand; do
  runs=()
  for _ in $(seq "$RUNS"); do
    touch "$GEN/$name/src/lib.rs"
    runs+=("$(cd "$GEN/$name" && time_ms cargo check --offline)")
  done
  CHECK[$name]=$(printf '%s\n' "${runs[@]}" | median)
  echo "$N services, $name: cargo check runs ${runs[*]} ms, median $(secs "${CHECK[$name]}")"
done

echo
echo "| build | dual-mode | reference | ratio |"
echo "|---|---:|---:|---:|"
awk -v a="${CLEAN[dual-mode-derive]}" -v b="${CLEAN[serde_derive]}" \
  'BEGIN { printf "| clean release build with deps: dual-mode-derive vs serde_derive | %.1f s | %.1f s | %.2fx |\n", a/1000, b/1000, a/b }'
awk -v a="${ALONE[dual-mode-derive]}" -v b="${ALONE[serde_derive]}" \
  'BEGIN { printf "| the crate alone (deps built): dual-mode-derive vs serde_derive | %.1f s | %.1f s | %.2fx |\n", a/1000, b/1000, a/b }'
awk -v a="${CHECK[derived]}" -v b="${CHECK[hand]}" -v n="$N" \
  'BEGIN { printf "| expansion + `cargo check`, %d services: derived vs by hand | %.1f s | %.1f s | %.2fx |\n", n, a/1000, b/1000, a/b }'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
