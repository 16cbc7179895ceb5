//! The key-ring hot paths after issue 6 made the rings swappable at run time: a CSRF token
//! check and a seal/open each take a snapshot of their ring (an `Arc` clone under a read lock)
//! before the HMAC or AEAD; a cached secret read; and the cost of a rotation itself.
//!
//! `cargo bench -p authkit --bench keys`

// Benchmark set-up: a failure should stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use authkit::crypto::Sealer;
use authkit::csrf::CsrfTokens;
use authkit::rng::OsRandom;
use authkit::secret::{KeyId, KeyRing, SecretKey};
use authkit::secrets::{SecretCache, SecretError, SecretProvider, SecretValue};
use authkit::session::SessionIdHash;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;

fn ring(keys: &[(&str, u8)]) -> KeyRing {
    KeyRing::new(
        keys.iter()
            .map(|(id, b)| {
                (
                    KeyId::new(*id).unwrap(),
                    SecretKey::new(vec![*b; 32]).unwrap(),
                )
            })
            .collect(),
    )
    .unwrap()
}

/// A provider that answers at once (the cache's own cost only).
#[derive(Debug)]
struct Fixed;

#[async_trait]
impl SecretProvider for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    async fn get(&self, _name: &str) -> Result<SecretValue, SecretError> {
        Ok(SecretValue::new(
            SecretString::from("value"),
            Some("1".into()),
        ))
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("keys");
    let session = SessionIdHash::from_bytes([7; 32]);
    let csrf = CsrfTokens::new(ring(&[("k2", 2), ("k1", 1)]));
    let token = csrf.issue(&session).unwrap();
    group.bench_function("csrf_verify", |b| {
        b.iter(|| black_box(csrf.verify(black_box(&token), &session)));
    });

    let sealer = Sealer::new(&ring(&[("k2", 2), ("k1", 1)]));
    let sealed = sealer.seal(&[0x42; 64], b"bench", &OsRandom).unwrap();
    group.bench_function("sealer_open_64b", |b| {
        b.iter(|| black_box(sealer.open(black_box(&sealed), b"bench").unwrap()));
    });
    group.bench_function("sealer_seal_64b", |b| {
        b.iter(|| black_box(sealer.seal(&[0x42; 64], b"bench", &OsRandom).unwrap()));
    });
    group.bench_function("sealer_set_keys", |b| {
        let next = ring(&[("k3", 3), ("k2", 2)]);
        b.iter(|| sealer.set_keys(black_box(&next)));
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = SecretCache::new(Arc::new(Fixed));
    runtime.block_on(cache.get("session_key")).unwrap();
    group.bench_function("secret_cache_get_hit", |b| {
        b.iter(|| black_box(runtime.block_on(cache.get("session_key")).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
