//! The MFA hot paths: one TOTP check (every candidate step's HMAC, accepted or not), the
//! backup-code hash candidates of a login, and the enrolment QR image.
//!
//! `cargo bench -p authkit --bench totp`

// Benchmark set-up: a failure should stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use authkit::clock::Timestamp;
use authkit::mfa::{
    BackupCode, BackupCodeHasher, TotpAlgorithm, TotpCheck, TotpCode, TotpConfig, TotpSecret,
    qr_png_data_uri,
};
use authkit::rng::OsRandom;
use authkit::secret::{KeyId, KeyRing, SecretKey};
use authkit::user::UserId;
use criterion::{Criterion, criterion_group, criterion_main};

fn check_pair(c: &mut Criterion, name: &str, config: &TotpConfig, secret_len: usize) {
    let secret = TotpSecret::generate(&OsRandom, secret_len).unwrap();
    let now = Timestamp::from_unix_seconds(1_800_000_000);
    let step = config.current_step(now).unwrap();
    let good = config.code_at(&secret, step);
    // A code matching no step of the window.
    let bad = (0u32..)
        .map(|n| {
            let text = format!("{n:0width$}", width = usize::from(config.digits));
            TotpCode::parse(&text, config.digits).unwrap()
        })
        .find(|code| config.check(&secret, code, now, None) == TotpCheck::Rejected)
        .unwrap();
    assert_eq!(
        config.check(&secret, &good, now, None),
        TotpCheck::Accepted { step }
    );

    let mut group = c.benchmark_group(format!("totp_check/{name}"));
    group.bench_function("accepted", |b| {
        b.iter(|| config.check(&secret, black_box(&good), black_box(now), None));
    });
    group.bench_function("rejected", |b| {
        b.iter(|| config.check(&secret, black_box(&bad), black_box(now), None));
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let sha1 = TotpConfig::default();
    check_pair(c, "sha1_6_window1", &sha1, 20);
    let mut sha512 = TotpConfig::default();
    sha512.algorithm = TotpAlgorithm::Sha512;
    sha512.digits = 8;
    check_pair(c, "sha512_8_window1", &sha512, 64);

    let ring = KeyRing::new(vec![
        (
            KeyId::new("k2").unwrap(),
            SecretKey::new(vec![2; 32]).unwrap(),
        ),
        (
            KeyId::new("k1").unwrap(),
            SecretKey::new(vec![1; 32]).unwrap(),
        ),
    ])
    .unwrap();
    let hasher = BackupCodeHasher::new(&ring);
    let user = UserId::generate(&OsRandom).unwrap();
    let code = BackupCode::generate(&OsRandom).unwrap();
    c.bench_function("backup_code/candidates_2_keys", |b| {
        b.iter(|| hasher.candidates(black_box(&user), black_box(&code)));
    });

    let secret = TotpSecret::generate(&OsRandom, 20).unwrap();
    let uri = sha1.otpauth_uri(&secret, "alice@example.com").unwrap();
    c.bench_function("qr/png_data_uri", |b| {
        b.iter(|| qr_png_data_uri(black_box(&uri)).unwrap());
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
