//! One argon2id hash and one verification at the default (OWASP minimum) parameters: the unit
//! of login throughput (cores ÷ this time).
//!
//! `cargo bench -p authkit --bench password_hash`

// Benchmark set-up: a failure should stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use authkit::password::{HashParams, PasswordHasher};
use authkit::rng::OsRandom;
use authkit::secret::SecretString;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hasher = rt
        .block_on(PasswordHasher::new(
            HashParams::default(),
            Some(1),
            Arc::new(OsRandom),
        ))
        .unwrap();
    let password = SecretString::from("correct horse battery staple");
    let phc = rt.block_on(hasher.hash(&password)).unwrap();

    let mut group = c.benchmark_group("password");
    group.sample_size(20);
    group.bench_function("argon2id_hash_m19456_t2_p1", |b| {
        b.to_async(&rt).iter(|| hasher.hash(&password));
    });
    group.bench_function("argon2id_verify_m19456_t2_p1", |b| {
        b.to_async(&rt)
            .iter(|| hasher.verify(&password, Some(&phc)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
