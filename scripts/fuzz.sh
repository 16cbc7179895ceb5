#!/usr/bin/env bash
# Fuzzes authkit's input parsers with cargo-fuzz (libFuzzer + AddressSanitizer).
#
# Targets (fuzz/fuzz_targets/): session_cookie, json_bodies, origin, stored_secrets, mfa_codes,
# otpauth_uri, oauth_callback. Each runs for the given number of seconds, starting from the committed seed
# corpus in fuzz/corpus/<target>/; inputs
# the fuzzer finds go to fuzz/target/corpus/<target>/ (git-ignored), so the seeds stay small.
# Crashing inputs are written to fuzz/artifacts/<target>/ and make the script exit non-zero
# after all targets have run.
#
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]   (default 30 s, every target)
# Env:   FUZZ_BUILD_ONLY=1 only builds the targets (with the sanitizer if cargo-fuzz works,
#        as a plain `cargo build` otherwise).
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer, sancov passes). Only a stable
# toolchain is installed here, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-30}"
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ "$DURATION" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [seconds-per-target] [target...]" >&2
  exit 2
fi
if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  TARGETS=(session_cookie json_bodies origin stored_secrets mfa_codes otpauth_uri oauth_callback)
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

plain_build() {
  step "cargo build --manifest-path fuzz/Cargo.toml (no sanitizer, no fuzzing)"
  cargo build --manifest-path fuzz/Cargo.toml --bins
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  if ! cargo install cargo-fuzz --locked; then
    echo "cargo-fuzz could not be installed; building the targets only" >&2
    plain_build
    exit 1
  fi
fi

cd fuzz
step "cargo fuzz build ($(cargo fuzz --version))"
if ! cargo fuzz build; then
  echo "cargo fuzz build failed; checking that the targets build without instrumentation" >&2
  cd ..
  plain_build
  exit 1
fi
if [[ "${FUZZ_BUILD_ONLY:-0}" == 1 ]]; then
  exit 0
fi

failed=()
for target in "${TARGETS[@]}"; do
  step "fuzzing $target for ${DURATION}s"
  mkdir -p "target/corpus/$target" "corpus/$target"
  if ! cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$DURATION" -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  printf '\nfuzzing found a failure in: %s (inputs in fuzz/artifacts/)\n' "${failed[*]}" >&2
  exit 1
fi
printf '\nno crash in %s target(s) after %ss each\n' "${#TARGETS[@]}" "$DURATION"
