//! `AwsSecrets` against a real Secrets Manager API: a moto server (`moto_server -H 127.0.0.1
//! -p 5000`) named by `AUTHKIT_TEST_AWS_ENDPOINT` (e.g. `http://127.0.0.1:5000`).
//!
//! Without `AUTHKIT_TEST_AWS_ENDPOINT` the moto tests print a notice and pass, except under
//! `CI=true` (or `1`), where a missing endpoint is a failure. The unreachable-endpoint test
//! needs no server and always runs.
//!
//! Every test uses its own secret ids (`authkit-test/<pid>-<nanos>-<random>/…`), so parallel
//! runs and re-runs against a long-lived moto do not collide. Values are random, made at run
//! time.
#![cfg(feature = "aws")]
// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::error::Error as _;
use std::sync::Once;
use std::time::Duration;

use authkit::rng::{OsRandom, RandomSource as _};
use authkit::secrets::{
    AwsSecrets, AwsSecretsConfig, ENCRYPTION_KEY, PEPPER, SESSION_KEY, SecretError, SecretKeys,
    SecretProvider,
};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_smithy_http_client::tls;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const REGION: &str = "us-east-1";

static ENV: Once = Once::new();

/// Fake credentials for moto (which accepts any), set once before any client reads them.
/// Variables that are already set are left alone.
fn set_test_credentials() {
    ENV.call_once(|| {
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ] {
            if std::env::var_os(key).is_none() {
                // SAFETY: every test calls this function before it builds any AWS client, and
                // `Once` makes the other test threads wait until the writes are done; nothing
                // else in this test binary reads the environment concurrently.
                #[allow(unsafe_code)]
                unsafe {
                    std::env::set_var(key, value);
                }
            }
        }
    });
}

/// The moto endpoint, or `None` (after a notice) when the tests should be skipped.
fn endpoint() -> Option<String> {
    set_test_credentials();
    match std::env::var("AUTHKIT_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            if ci {
                panic!(
                    "CI=true but AUTHKIT_TEST_AWS_ENDPOINT is not set: start `moto_server -H \
                     127.0.0.1 -p 5000` and set AUTHKIT_TEST_AWS_ENDPOINT=http://127.0.0.1:5000"
                );
            }
            eprintln!(
                "skipping: AUTHKIT_TEST_AWS_ENDPOINT is not set (start `moto_server -H 127.0.0.1 \
                 -p 5000` and set it to http://127.0.0.1:5000 to run the AWS secret tests)"
            );
            None
        }
    }
}

/// A prefix no other test or run uses.
fn unique_prefix(test: &str) -> String {
    // The clock is read only to make names unique, never for authkit logic.
    #[allow(clippy::disallowed_methods)]
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut salt = [0u8; 4];
    OsRandom.try_fill(&mut salt).unwrap();
    let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    format!("authkit-test/{}-{nanos}-{salt}/{test}/", std::process::id())
}

/// A fresh random value (base64 of 32 random bytes).
fn random_value() -> String {
    let mut bytes = [0u8; 32];
    OsRandom.try_fill(&mut bytes).unwrap();
    STANDARD.encode(bytes)
}

/// A one-key ring, `k1:<base64 of 32 random bytes>`.
fn random_ring() -> String {
    format!("k1:{}", random_value())
}

fn config(endpoint: &str, prefix: &str) -> AwsSecretsConfig {
    AwsSecretsConfig {
        region: Some(REGION.into()),
        endpoint_url: Some(endpoint.into()),
        prefix: prefix.into(),
        ..AwsSecretsConfig::default()
    }
}

/// An SDK client for creating and changing secrets, built like `AwsSecrets` builds its own.
async fn admin(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    set_test_credentials();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&conf)
}

/// The error, its sources and its `Debug`, as one text.
fn error_text(e: &SecretError) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test]
async fn reads_a_secret_and_its_version() {
    let Some(endpoint) = endpoint() else { return };
    let prefix = unique_prefix("read");
    let admin = admin(&endpoint).await;
    let value = random_value();
    let created = admin
        .create_secret()
        .name(format!("{prefix}db_url"))
        .secret_string(&value)
        .send()
        .await
        .unwrap();

    let provider = AwsSecrets::connect(config(&endpoint, &prefix))
        .await
        .unwrap();
    assert_eq!(provider.name(), "aws");
    assert_eq!(provider.secret_id("db_url"), format!("{prefix}db_url"));
    let got = provider.get("db_url").await.unwrap();
    assert_eq!(got.expose(), value);
    assert!(created.version_id().is_some());
    assert_eq!(got.version(), created.version_id());

    let debug = format!("{provider:?} {got:?}");
    assert!(!debug.contains(&value), "{debug}");
    assert!(debug.contains(&prefix), "{debug}");
}

#[tokio::test]
async fn picks_up_a_rotated_value() {
    let Some(endpoint) = endpoint() else { return };
    let prefix = unique_prefix("rotate");
    let admin = admin(&endpoint).await;
    let id = format!("{prefix}pepper");
    let old = random_value();
    admin
        .create_secret()
        .name(&id)
        .secret_string(&old)
        .send()
        .await
        .unwrap();
    let provider = AwsSecrets::connect(config(&endpoint, &prefix))
        .await
        .unwrap();
    let before = provider.get("pepper").await.unwrap();
    assert_eq!(before.expose(), old);

    let new = random_value();
    let put = admin
        .put_secret_value()
        .secret_id(&id)
        .secret_string(&new)
        .send()
        .await
        .unwrap();
    let after = provider.get("pepper").await.unwrap();
    assert_eq!(after.expose(), new);
    assert_ne!(after.version(), before.version());
    assert_eq!(after.version(), put.version_id());
}

#[tokio::test]
async fn a_missing_secret_is_not_found() {
    let Some(endpoint) = endpoint() else { return };
    let prefix = unique_prefix("missing");
    let provider = AwsSecrets::connect(config(&endpoint, &prefix))
        .await
        .unwrap();
    let err = provider.get("nothing_here").await.unwrap_err();
    match &err {
        SecretError::NotFound { name, provider } => {
            assert_eq!(name, "nothing_here");
            assert_eq!(*provider, "aws");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("nothing_here") && text.contains("aws"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_quickly() {
    set_test_credentials();
    let value = random_value();
    let provider = AwsSecrets::connect(AwsSecretsConfig {
        region: Some(REGION.into()),
        endpoint_url: Some("http://127.0.0.1:9".into()),
        prefix: "authkit-test/unreachable/".into(),
        timeout: Duration::from_secs(1),
        max_attempts: 1,
    })
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), provider.get(PEPPER))
        .await
        .expect("get must give up on its own, well within 10 s");
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            SecretError::Unavailable {
                provider: "aws",
                ..
            }
        ),
        "{err:?}"
    );
    let text = error_text(&err);
    eprintln!("unreachable endpoint after {elapsed:?}: {text}");
    // The operator learns which secret failed and why ...
    assert!(text.contains("authkit-test/unreachable/pepper"), "{text}");
    // ... and nothing secret: no value, no credential.
    assert!(!text.contains(&value), "{text}");
    if let Ok(key) = std::env::var("AWS_SECRET_ACCESS_KEY") {
        assert!(!text.contains(&key), "{text}");
    }
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    set_test_credentials();
    // Accepts connections and never answers: only the attempt timeout can end the read.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let provider = AwsSecrets::connect(AwsSecretsConfig {
        region: Some(REGION.into()),
        endpoint_url: Some(format!("http://{address}")),
        prefix: "authkit-test/silent/".into(),
        timeout: Duration::from_secs(1),
        max_attempts: 2,
    })
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), provider.get(PEPPER))
        .await
        .expect("the attempt timeout must end the read");
    let elapsed = started.elapsed();
    holder.abort();
    let err = result.unwrap_err();
    let text = error_text(&err);
    eprintln!("silent endpoint after {elapsed:?}: {text}");
    assert!(
        matches!(
            err,
            SecretError::Unavailable {
                provider: "aws",
                ..
            }
        ),
        "{err:?}"
    );
    // Two attempts of 1 s each, plus a short backoff.
    assert!(elapsed >= Duration::from_secs(2), "took {elapsed:?}");
    assert!(
        text.contains("timeout") || text.contains("timed out"),
        "{text}"
    );
}

#[tokio::test]
async fn loads_key_rings_stored_in_aws() {
    let Some(endpoint) = endpoint() else { return };
    let prefix = unique_prefix("rings");
    let admin = admin(&endpoint).await;
    let mut rings = Vec::new();
    for name in [SESSION_KEY, ENCRYPTION_KEY, PEPPER] {
        let ring = random_ring();
        admin
            .create_secret()
            .name(format!("{prefix}{name}"))
            .secret_string(&ring)
            .send()
            .await
            .unwrap();
        rings.push(ring);
    }
    let provider = AwsSecrets::connect(config(&endpoint, &prefix))
        .await
        .unwrap();
    let keys = SecretKeys::load(&provider).await.unwrap();
    for (ring, stored) in [&keys.session, &keys.encryption, &keys.pepper]
        .into_iter()
        .zip(&rings)
    {
        let (id, key) = ring.current();
        assert_eq!(id.as_str(), "k1");
        assert_eq!(format!("k1:{}", STANDARD.encode(key.expose())), *stored);
    }
    let debug = format!("{keys:?}");
    assert!(rings.iter().all(|r| !debug.contains(&r[3..])), "{debug}");
}

#[tokio::test]
async fn reads_binary_secrets_only_when_they_are_text() {
    let Some(endpoint) = endpoint() else { return };
    let prefix = unique_prefix("binary");
    let admin = admin(&endpoint).await;
    let text = random_value();
    admin
        .create_secret()
        .name(format!("{prefix}as_text"))
        .secret_binary(Blob::new(text.as_bytes()))
        .send()
        .await
        .unwrap();
    let mut raw = vec![0xffu8, 0xfe];
    raw.extend_from_slice(random_value().as_bytes());
    admin
        .create_secret()
        .name(format!("{prefix}not_text"))
        .secret_binary(Blob::new(raw.clone()))
        .send()
        .await
        .unwrap();

    let provider = AwsSecrets::connect(config(&endpoint, &prefix))
        .await
        .unwrap();
    assert_eq!(provider.get("as_text").await.unwrap().expose(), text);

    let err = provider.get("not_text").await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
    let message = error_text(&err);
    eprintln!("binary secret that is not UTF-8: {message}");
    assert!(message.contains("UTF-8"), "{message}");
    let tail = String::from_utf8_lossy(&raw[2..]).into_owned();
    assert!(!message.contains(&tail), "{message}");
}
