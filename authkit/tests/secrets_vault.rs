//! `VaultSecrets` against a real OpenBao (or HashiCorp Vault) dev server.
//!
//! Set `AUTHKIT_TEST_VAULT_ADDR` (e.g. `http://127.0.0.1:8200`) and `AUTHKIT_TEST_VAULT_TOKEN`
//! (a root token), e.g. after
//! `bao server -dev -dev-listen-address=127.0.0.1:8200 -dev-root-token-id=<id>`.
//! Without them the server tests print a notice and pass, except under `CI=true`, where a
//! missing server is a failure. The tests that need no server always run.
//!
//! Every test works under its own KV prefix, policy and AppRole role, so they run in
//! parallel against one server.
#![cfg(feature = "vault")]
// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use authkit::rng::{OsRandom, RandomSource as _};
use authkit::secrets::{
    ENCRYPTION_KEY, PEPPER, SESSION_KEY, SecretError, SecretKeys, SecretProvider, VaultAuth,
    VaultSecrets, VaultSecretsConfig,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use tokio::time::Instant;
use vaultrs::api::auth::approle::requests::SetAppRoleRequestBuilder;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

const KV_MOUNT: &str = "secret";
const APPROLE: &str = "approle";

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRandom.try_fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value that looks like nothing in particular, made at run time.
fn random_value(label: &str) -> String {
    format!("{label}-{}", random_hex(12))
}

/// `k1:<base64 of 32 random bytes>`.
fn random_key_ring() -> String {
    let mut key = [0u8; 32];
    OsRandom.try_fill(&mut key).unwrap();
    format!("k1:{}", STANDARD.encode(key))
}

/// The server and root token from the environment, or `None` (skip) outside CI.
fn server() -> Option<(String, String)> {
    let addr = std::env::var("AUTHKIT_TEST_VAULT_ADDR").unwrap_or_default();
    let token = std::env::var("AUTHKIT_TEST_VAULT_TOKEN").unwrap_or_default();
    if !addr.is_empty() && !token.is_empty() {
        return Some((addr, token));
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if ci == "true" || ci == "1" {
        panic!(
            "CI is set but AUTHKIT_TEST_VAULT_ADDR / AUTHKIT_TEST_VAULT_TOKEN are not: \
             start an OpenBao dev server (`bao server -dev …`) and export both"
        );
    }
    eprintln!(
        "skipping: set AUTHKIT_TEST_VAULT_ADDR and AUTHKIT_TEST_VAULT_TOKEN to run the Vault tests"
    );
    None
}

fn client(addr: &str, token: &str) -> VaultClient {
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(addr)
            .token(token)
            .timeout(Some(Duration::from_secs(5)))
            .verify(true)
            .ca_certs(Vec::new())
            .identity(None)
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// An AppRole role made for one test.
struct Role {
    name: String,
    role_id: String,
    secret_id: String,
}

impl Role {
    fn auth(&self) -> VaultAuth {
        VaultAuth::AppRole {
            mount: APPROLE.into(),
            role_id: self.role_id.clone(),
            secret_id: SecretString::from(self.secret_id.clone()),
        }
    }
}

/// Admin access (root token) and this test's own KV prefix.
struct Fixture {
    admin: VaultClient,
    addr: String,
    root: String,
    id: String,
    prefix: String,
}

impl Fixture {
    async fn new() -> Option<Self> {
        let (addr, root) = server()?;
        let id = format!("{}-{}", std::process::id(), random_hex(6));
        Some(Self {
            admin: client(&addr, &root),
            prefix: format!("authkit-test/{id}/"),
            addr,
            root,
            id,
        })
    }

    /// Writes `fields` to `<prefix><name>` and returns the new KV version.
    async fn write_fields(&self, prefix: &str, name: &str, fields: &serde_json::Value) -> u64 {
        vaultrs::kv2::set(&self.admin, KV_MOUNT, &format!("{prefix}{name}"), fields)
            .await
            .unwrap()
            .version
    }

    async fn write(&self, name: &str, value: &str) -> u64 {
        self.write_fields(&self.prefix, name, &serde_json::json!({ "value": value }))
            .await
    }

    fn config(&self, auth: VaultAuth) -> VaultSecretsConfig {
        let mut config = VaultSecretsConfig::new(&self.addr, auth);
        config.prefix = self.prefix.clone();
        config
    }

    fn root_auth(&self) -> VaultAuth {
        VaultAuth::Token(SecretString::from(self.root.clone()))
    }

    /// A role whose tokens may only read `secret/data/<prefix>*`.
    async fn role(&self, token_ttl: &str, token_max_ttl: &str) -> Role {
        ensure_approle(&self.admin).await;
        let name = format!("authkit-test-{}", self.id);
        let policy = format!(
            r#"path "{KV_MOUNT}/data/{}*" {{ capabilities = ["read"] }}"#,
            self.prefix
        );
        vaultrs::sys::policy::set(&self.admin, &name, &policy)
            .await
            .unwrap();
        vaultrs::auth::approle::role::set(
            &self.admin,
            APPROLE,
            &name,
            Some(
                SetAppRoleRequestBuilder::default()
                    .token_policies(vec![name.clone()])
                    .token_ttl(token_ttl)
                    .token_max_ttl(token_max_ttl),
            ),
        )
        .await
        .unwrap();
        let role_id = vaultrs::auth::approle::role::read_id(&self.admin, APPROLE, &name)
            .await
            .unwrap()
            .role_id;
        let secret_id =
            vaultrs::auth::approle::role::secret::generate(&self.admin, APPROLE, &name, None)
                .await
                .unwrap()
                .secret_id;
        Role {
            name,
            role_id,
            secret_id,
        }
    }

    /// Accessors of the live tokens that logins to `role` created.
    async fn role_tokens(&self, role: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .get(format!("{}/v1/auth/token/accessors?list=true", self.addr))
            .header("X-Vault-Token", &self.root)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut found = Vec::new();
        for accessor in body["data"]["keys"].as_array().cloned().unwrap_or_default() {
            let Some(accessor) = accessor.as_str() else {
                continue;
            };
            // Tokens of other tests come and go meanwhile; an expired token is not found.
            let Ok(info) = vaultrs::token::lookup_accessor(&self.admin, accessor).await else {
                continue;
            };
            let of_role = info
                .meta
                .as_ref()
                .and_then(|meta| meta.get("role_name"))
                .is_some_and(|name| name == role);
            // Vault rounds the TTL down: 0 is a live token in its last second.
            if of_role {
                found.push(accessor.to_owned());
            }
        }
        found
    }
}

/// Enables AppRole at `approle/` unless it is; tolerates another test enabling it meanwhile.
async fn ensure_approle(admin: &VaultClient) {
    let mounted = |mounts: &HashMap<String, _>| mounts.contains_key(&format!("{APPROLE}/"));
    if mounted(&vaultrs::sys::auth::list(admin).await.unwrap()) {
        return;
    }
    if let Err(e) = vaultrs::sys::auth::enable(admin, APPROLE, "approle", None).await {
        assert!(
            mounted(&vaultrs::sys::auth::list(admin).await.unwrap()),
            "enabling AppRole failed: {e}"
        );
    }
}

/// Every text an error shows: `Display`, `Debug` and the `Display` of each source.
fn error_texts(e: &SecretError) -> String {
    let mut text = format!("{e}\n{e:?}\n");
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!("{cause}\n{cause:?}\n"));
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn token_auth_reads_the_latest_value_and_its_version() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let (v1, v2) = (random_value("one"), random_value("two"));
    assert_eq!(fx.write("db_password", &v1).await, 1);
    let vault = VaultSecrets::connect(fx.config(fx.root_auth()))
        .await
        .unwrap();
    assert_eq!(vault.name(), "vault");
    assert_eq!(
        vault.path("db_password"),
        format!("{}db_password", fx.prefix)
    );

    let got = vault.get("db_password").await.unwrap();
    assert_eq!(got.expose(), v1);
    assert_eq!(got.version(), Some("1"));

    // Rotation: a new KV version is what the next read returns.
    assert_eq!(fx.write("db_password", &v2).await, 2);
    let got = vault.get("db_password").await.unwrap();
    assert_eq!(got.expose(), v2);
    assert_eq!(got.version(), Some("2"));
    assert!(!format!("{got:?}").contains(&v2));
}

#[tokio::test]
async fn approle_reads_inside_its_policy_and_is_denied_outside() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let value = random_value("inside");
    fx.write("api_key", &value).await;
    // An entry that exists, but outside the role's policy.
    let outside = format!("authkit-test-outside/{}/", fx.id);
    fx.write_fields(
        &outside,
        "api_key",
        &serde_json::json!({ "value": random_value("outside") }),
    )
    .await;
    let role = fx.role("60s", "120s").await;

    let vault = VaultSecrets::connect(fx.config(role.auth())).await.unwrap();
    let got = vault.get("api_key").await.unwrap();
    assert_eq!(got.expose(), value);
    assert_eq!(got.version(), Some("1"));

    let mut config = fx.config(role.auth());
    config.prefix = outside;
    let elsewhere = VaultSecrets::connect(config).await.unwrap();
    let err = elsewhere.get("api_key").await.unwrap_err();
    assert!(
        matches!(&err, SecretError::Denied { name, provider: "vault" } if name == "api_key"),
        "{err:?}"
    );
    assert!(err.to_string().contains("api_key"));
    // The refusal did not break the token: the allowed read still works.
    assert_eq!(vault.get("api_key").await.unwrap().expose(), value);
}

#[tokio::test]
async fn missing_secrets_fields_and_bad_names_are_not_found() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let vault = VaultSecrets::connect(fx.config(fx.root_auth()))
        .await
        .unwrap();

    let err = vault.get("nothing_here").await.unwrap_err();
    assert!(
        matches!(&err, SecretError::NotFound { name, provider: "vault" } if name == "nothing_here"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("nothing_here") && text.contains("vault"),
        "{text}"
    );

    // The entry exists but has no `value` field.
    fx.write_fields(
        &fx.prefix,
        "other_field",
        &serde_json::json!({ "password": random_value("pw") }),
    )
    .await;
    let err = vault.get("other_field").await.unwrap_err();
    assert!(matches!(err, SecretError::NotFound { .. }), "{err:?}");

    // A custom field name picks it up.
    let mut config = fx.config(fx.root_auth());
    config.field = "password".into();
    let by_field = VaultSecrets::connect(config).await.unwrap();
    assert!(by_field.get("other_field").await.is_ok());

    // A field that is not a string is a provider error, not a value.
    fx.write_fields(&fx.prefix, "numeric", &serde_json::json!({ "value": 42 }))
        .await;
    let err = vault.get("numeric").await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
    assert!(error_texts(&err).contains("not a string"));

    // A soft-deleted latest version answers 404 without Vault's error list.
    fx.write("deleted", &random_value("gone")).await;
    assert!(vault.get("deleted").await.is_ok());
    vaultrs::kv2::delete_latest(&fx.admin, KV_MOUNT, &format!("{}deleted", fx.prefix))
        .await
        .unwrap();
    let err = vault.get("deleted").await.unwrap_err();
    assert!(matches!(err, SecretError::NotFound { .. }), "{err:?}");

    // Names are `[A-Za-z0-9_]`: nothing else reaches the server.
    for bad in ["../db_password", "a/b", "", "x?version=1", "spaced name"] {
        let err = vault.get(bad).await.unwrap_err();
        assert!(
            matches!(err, SecretError::NotFound { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_token_vault_refuses_is_denied() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    fx.write("db_password", &random_value("pw")).await;
    let bogus = format!("bogus-{}", random_hex(8));
    let vault =
        VaultSecrets::connect(fx.config(VaultAuth::Token(SecretString::from(bogus.clone()))))
            .await
            .unwrap();
    let err = vault.get("db_password").await.unwrap_err();
    assert!(
        matches!(&err, SecretError::Denied { name, provider: "vault" } if name == "db_password"),
        "{err:?}"
    );
    assert!(!error_texts(&err).contains(&bogus));
}

/// Token TTL 4 s, max TTL 30 s: reads at 0 s, 7 s and 14 s all work on the *same* token, so
/// the background renewer kept it alive past three TTLs.
#[tokio::test]
async fn approle_token_is_renewed_in_the_background() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let value = random_value("renewed");
    fx.write("session_secret", &value).await;
    let role = fx.role("4s", "30s").await;
    let start = Instant::now();
    let vault = VaultSecrets::connect(fx.config(role.auth())).await.unwrap();
    assert_eq!(vault.get("session_secret").await.unwrap().expose(), value);
    let first = fx.role_tokens(&role.name).await;
    assert_eq!(first.len(), 1, "one login so far: {first:?}");

    for at in [7, 14] {
        tokio::time::sleep_until(start + Duration::from_secs(at)).await;
        assert_eq!(
            vault.get("session_secret").await.unwrap().expose(),
            value,
            "read at {at} s"
        );
    }
    // Still the first token: renewed, not replaced.
    assert_eq!(fx.role_tokens(&role.name).await, first);
}

/// Token TTL 2 s, max TTL 4 s: the renewer logs in again before the max TTL ends, without any
/// read asking for it.
#[tokio::test]
async fn approle_logs_in_again_past_the_max_ttl() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let value = random_value("relogin");
    fx.write("session_secret", &value).await;
    let role = fx.role("2s", "4s").await;
    let start = Instant::now();
    let vault = VaultSecrets::connect(fx.config(role.auth())).await.unwrap();
    let first = fx.role_tokens(&role.name).await;
    assert_eq!(first.len(), 1, "{first:?}");

    tokio::time::sleep_until(start + Duration::from_secs(6)).await;
    let now = fx.role_tokens(&role.name).await;
    assert!(!now.is_empty(), "the renewer did not log in again");
    assert!(
        now.iter().all(|a| !first.contains(a)),
        "the first token outlived its max TTL: {now:?}"
    );
    assert_eq!(vault.get("session_secret").await.unwrap().expose(), value);
}

/// The token is revoked behind the provider's back: the next read gets 403, logs in again once
/// and succeeds.
#[tokio::test]
async fn approle_logs_in_again_when_its_token_is_revoked() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let value = random_value("revoked");
    fx.write("session_secret", &value).await;
    let role = fx.role("60s", "120s").await;
    let vault = VaultSecrets::connect(fx.config(role.auth())).await.unwrap();
    assert_eq!(vault.get("session_secret").await.unwrap().expose(), value);

    let first = fx.role_tokens(&role.name).await;
    assert_eq!(first.len(), 1, "{first:?}");
    vaultrs::token::revoke_accessor(&fx.admin, &first[0])
        .await
        .unwrap();

    let got = vault.get("session_secret").await.unwrap();
    assert_eq!(got.expose(), value);
    let now = fx.role_tokens(&role.name).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, first);

    // A wrong secret id is refused at connect.
    let wrong = VaultAuth::AppRole {
        mount: APPROLE.into(),
        role_id: role.role_id.clone(),
        secret_id: SecretString::from(random_hex(16)),
    };
    let err = VaultSecrets::connect(fx.config(wrong)).await.unwrap_err();
    assert!(
        matches!(&err, SecretError::Denied { name, provider: "vault" } if name == "approle login"),
        "{err:?}"
    );
}

/// Needs no server.
#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_fails_fast() {
    let token = format!("t-{}", random_hex(8));
    let mut config = VaultSecretsConfig::new(
        "http://127.0.0.1:9",
        VaultAuth::Token(SecretString::from(token.clone())),
    );
    config.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let vault = VaultSecrets::connect(config.clone()).await.unwrap();
    let err = vault.get("db_password").await.unwrap_err();
    assert!(
        matches!(&err, SecretError::Unavailable { name, provider: "vault", .. } if name == "db_password"),
        "{err:?}"
    );
    let texts = error_texts(&err);
    assert!(!texts.contains(&token), "{texts}");
    assert!(!texts.contains("stack backtrace"), "{texts}");

    let secret_id = random_hex(16);
    config.auth = VaultAuth::AppRole {
        mount: APPROLE.into(),
        role_id: random_hex(8),
        secret_id: SecretString::from(secret_id.clone()),
    };
    let err = VaultSecrets::connect(config).await.unwrap_err();
    assert!(
        matches!(&err, SecretError::Unavailable { name, provider: "vault", .. } if name == "approle login"),
        "{err:?}"
    );
    assert!(!error_texts(&err).contains(&secret_id));
    // How long it took is reported, not asserted (no timed tests).
    eprintln!("unreachable Vault after {:?}", start.elapsed());
}

/// Needs no server: bad settings are errors, never panics inside the HTTP client.
#[tokio::test]
async fn bad_configuration_is_rejected() {
    let token = || VaultAuth::Token(SecretString::from(format!("t-{}", random_hex(8))));
    let cases: Vec<(&str, VaultSecretsConfig)> = vec![
        (
            "not a URL",
            VaultSecretsConfig::new("vault:8200 x", token()),
        ),
        (
            "scheme",
            VaultSecretsConfig::new("ftp://127.0.0.1:8200", token()),
        ),
        (
            "credentials in the address",
            VaultSecretsConfig::new("http://user:pw@127.0.0.1:8200", token()),
        ),
        (
            "token with a newline",
            VaultSecretsConfig::new(
                "http://127.0.0.1:8200",
                VaultAuth::Token(SecretString::from(format!("t-{}\nx", random_hex(4)))),
            ),
        ),
        (
            "empty token",
            VaultSecretsConfig::new(
                "http://127.0.0.1:8200",
                VaultAuth::Token(SecretString::from(String::new())),
            ),
        ),
        ("mount with ..", {
            let mut c = VaultSecretsConfig::new("http://127.0.0.1:8200", token());
            c.mount = "secret/../sys".into();
            c
        }),
        ("prefix with a query", {
            let mut c = VaultSecretsConfig::new("http://127.0.0.1:8200", token());
            c.prefix = "authkit?x=".into();
            c
        }),
    ];
    for (what, config) in cases {
        let err = VaultSecrets::connect(config).await.unwrap_err();
        assert!(
            matches!(&err, SecretError::Unavailable { name, .. } if name == "vault configuration"),
            "{what}: {err:?}"
        );
    }
    // A token read from a file with a trailing newline is fine.
    let config = VaultSecretsConfig::new(
        "http://127.0.0.1:9",
        VaultAuth::Token(SecretString::from(format!("t-{}\n", random_hex(8)))),
    );
    assert!(VaultSecrets::connect(config).await.is_ok());
}

#[tokio::test]
async fn tokens_secret_ids_and_values_never_show() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let value = random_value("hidden");
    fx.write("db_password", &value).await;
    fx.write_fields(
        &fx.prefix,
        "numeric",
        &serde_json::json!({ "value": 7, "note": value }),
    )
    .await;
    let role = fx.role("60s", "120s").await;

    let by_token = VaultSecrets::connect(fx.config(fx.root_auth()))
        .await
        .unwrap();
    let by_role = VaultSecrets::connect(fx.config(role.auth())).await.unwrap();
    let mut outside = fx.config(role.auth());
    outside.prefix = format!("authkit-test-outside/{}/", fx.id);
    let outside = VaultSecrets::connect(outside).await.unwrap();
    let wrong_secret = VaultAuth::AppRole {
        mount: APPROLE.into(),
        role_id: role.role_id.clone(),
        secret_id: SecretString::from(random_hex(16)),
    };

    let mut shown = format!("{by_token:?}\n{by_role:?}\n{outside:?}\n");
    assert!(
        shown.contains("approle") && shown.contains("token"),
        "{shown}"
    );
    let got = by_role.get("db_password").await.unwrap();
    assert_eq!(got.expose(), value);
    shown.push_str(&format!("{got:?}\n"));
    for err in [
        by_token.get("missing").await.unwrap_err(),
        by_token.get("numeric").await.unwrap_err(),
        by_role.get("numeric").await.unwrap_err(),
        outside.get("db_password").await.unwrap_err(),
        VaultSecrets::connect(fx.config(wrong_secret))
            .await
            .unwrap_err(),
    ] {
        shown.push_str(&error_texts(&err));
    }
    for secret in [&fx.root, &role.secret_id, &value] {
        assert!(!shown.contains(secret.as_str()), "leaked in:\n{shown}");
    }
}

#[tokio::test]
async fn key_rings_load_from_vault() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    for name in [SESSION_KEY, ENCRYPTION_KEY, PEPPER] {
        fx.write(name, &random_key_ring()).await;
    }
    let role = fx.role("60s", "120s").await;
    let vault = VaultSecrets::connect(fx.config(role.auth())).await.unwrap();
    let keys = SecretKeys::load(&vault).await.unwrap();
    for ring in [&keys.session, &keys.encryption, &keys.pepper] {
        assert_eq!(ring.current().0.to_string(), "k1");
    }
    // The provider is usable as a trait object, too.
    let shared: std::sync::Arc<dyn SecretProvider> = std::sync::Arc::new(vault);
    assert!(SecretKeys::load(shared.as_ref()).await.is_ok());
}
