# Everyday recipes. `cargo install just --locked` if `just` is missing (Debian 12 has no package).

# Build the relay and the load generator, optimised.
build:
    cargo build --release --workspace

# The full test suite (what the README and CI run).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Interoperability with clients we did not write (swaks, Python smtplib, testssl.sh); installs
# them.
interop:
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends swaks python3 testssl.sh openssl
    cargo build --bin postern
    bash tests/interop/run.sh target/debug/postern
    bash tests/interop/tls.sh target/debug/postern

# Everything CI runs, in the same order.
ci:
    bash .ci/run

# Run a fuzz target for a while (needs cargo-fuzz; see docs/testing.md).
fuzz target="command_parser" seconds="60":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{target}} -- -max_total_time={{seconds}}

# The kill -9 durability proof, many times over (CI runs 20 trials): `just crash-soak 500`.
crash-soak trials="300":
    POSTERN_CRASH_TRIALS={{trials}} cargo test --release --test crash_recovery -- --nocapture

# Side-by-side benchmark: postern, Postfix and Exim relaying to smtp-sink, interleaved (needs root;
# installs Postfix from Debian). Results go to bench/results/ and are summarised in
# docs/benchmarks.md.
bench repeat="3" messages="20000":
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix
    cargo build --release --workspace
    python3 bench/harness.py --repeat {{repeat}} --messages {{messages}} --relays postern,postfix,exim --out bench/results/latest.json
