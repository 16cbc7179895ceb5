//! Provider tokens at rest: sealed under the encryption key ring and bound to the user and the
//! provider account (SECURITY.md #35), refreshed on demand for the embedding app.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{OAuthError, ProviderClient, ProviderTokens};
use crate::clock::Clock;
use crate::crypto::Sealer;
use crate::rng::RandomSource;
use crate::store::{OAuthAccount, SealedTokens, Store};
use crate::user::UserId;

/// A token this close to its expiry is refreshed before it is handed out.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Seals provider tokens for one `(user, issuer, subject)`.
#[derive(Clone)]
pub(crate) struct TokenSealer {
    sealer: Sealer,
}

impl std::fmt::Debug for TokenSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSealer")
    }
}

fn aad(kind: &str, user: &UserId, issuer: &str, subject: &str) -> Vec<u8> {
    // NUL-separated: none of the parts can contain NUL in a way that shifts the others
    // (user ids are UUIDs, and the kind is fixed).
    format!(
        "authkit oauth {kind} token\0{}\0{issuer}\0{subject}",
        user.as_str()
    )
    .into_bytes()
}

impl TokenSealer {
    pub(crate) fn new(sealer: Sealer) -> Self {
        Self { sealer }
    }

    pub(crate) fn seal(
        &self,
        tokens: &ProviderTokens,
        user: &UserId,
        issuer: &str,
        subject: &str,
        rng: &dyn RandomSource,
    ) -> Result<SealedTokens, OAuthError> {
        let seal = |kind: &str, token: &SecretString| {
            self.sealer
                .seal(
                    token.expose_secret().as_bytes(),
                    &aad(kind, user, issuer, subject),
                    rng,
                )
                .map_err(|_| OAuthError::Internal)
        };
        Ok(SealedTokens {
            access_token: Some(seal("access", &tokens.access_token)?),
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|t| seal("refresh", t))
                .transpose()?,
            expires_at: tokens.expires_at,
            scopes: tokens.scopes.clone(),
        })
    }

    /// The account's tokens sealed again under the newest key, or `None` when they already
    /// are. Fails when a token does not open (its key was retired).
    pub(crate) fn reseal(
        &self,
        account: &OAuthAccount,
        rng: &dyn RandomSource,
    ) -> Result<Option<SealedTokens>, OAuthError> {
        let mut tokens = account.tokens.clone();
        let mut changed = false;
        for (kind, slot) in [
            ("access", &mut tokens.access_token),
            ("refresh", &mut tokens.refresh_token),
        ] {
            let Some(sealed) = slot.as_deref() else {
                continue;
            };
            if self.sealer.is_current(sealed) {
                continue;
            }
            let plain = self.open(sealed, kind, account)?;
            *slot = Some(
                self.sealer
                    .seal(
                        plain.expose_secret().as_bytes(),
                        &aad(kind, &account.user_id, &account.issuer, &account.subject),
                        rng,
                    )
                    .map_err(|_| OAuthError::Internal)?,
            );
            changed = true;
        }
        Ok(changed.then_some(tokens))
    }

    pub(crate) fn open(
        &self,
        sealed: &str,
        kind: &str,
        account: &OAuthAccount,
    ) -> Result<SecretString, OAuthError> {
        let plain = self
            .sealer
            .open(
                sealed,
                &aad(kind, &account.user_id, &account.issuer, &account.subject),
            )
            .map_err(|e| {
                tracing::error!(account = %account.id, error = %e, "a stored provider token does not open");
                OAuthError::Internal
            })?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| OAuthError::Internal)?;
        Ok(SecretString::from(text))
    }
}

/// The embedding app's access to users' linked provider accounts: a valid access token to
/// call the provider's API on the user's behalf. Get it from
/// [`AuthKit::linked_accounts`](crate::AuthKit::linked_accounts).
#[derive(Clone)]
pub struct LinkedAccounts {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sealer: TokenSealer,
    pub(crate) rng: Arc<dyn RandomSource>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) providers: Arc<HashMap<String, Arc<ProviderClient>>>,
    /// One refresh at a time per account on this instance: providers that rotate refresh
    /// tokens (X) or detect their reuse (RFC 9700 §4.14.2) would otherwise revoke the grant
    /// when two requests refresh with the same token.
    pub(crate) refresh_gates: RefreshGates,
}

/// Per-account refresh locks, shared by every [`LinkedAccounts`] of one `AuthKit`.
pub(crate) type RefreshGates = moka::future::Cache<String, Arc<tokio::sync::Mutex<()>>>;

pub(crate) fn refresh_gates() -> RefreshGates {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(Duration::from_secs(300))
        .build()
}

impl std::fmt::Debug for LinkedAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedAccounts")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LinkedAccounts {
    /// The user's linked accounts, oldest first.
    pub async fn list(&self, user: &UserId) -> Result<Vec<OAuthAccount>, OAuthError> {
        self.store
            .oauth_accounts_for_user(user)
            .await
            .map_err(store_error)
    }

    /// A valid access token for the user's account at `provider`, refreshed first if it
    /// expires within a minute and a refresh token is stored. `None` when the user has no
    /// account there or no token is stored. Never log the value.
    pub async fn access_token(
        &self,
        user: &UserId,
        provider: &str,
    ) -> Result<Option<SecretString>, OAuthError> {
        let accounts = self.list(user).await?;
        let Some(account) = accounts.into_iter().find(|a| a.provider == provider) else {
            return Ok(None);
        };
        if let Some(usable) = self.usable(&account)? {
            return Ok(usable);
        }
        let gate = self
            .refresh_gates
            .get_with(account.id.clone(), async { Arc::default() })
            .await;
        let _turn = gate.lock().await;
        // Whoever held the gate before may have refreshed already: read the row again.
        let Some(account) = self
            .store
            .oauth_account_by_id(user, &account.id)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        if let Some(usable) = self.usable(&account)? {
            return Ok(usable);
        }
        let Some(sealed_refresh) = &account.tokens.refresh_token else {
            // Expired, and nothing to renew it with: the user must sign in again.
            return Ok(None);
        };
        let client = self
            .providers
            .get(&account.provider)
            .ok_or(OAuthError::Misconfigured)?;
        let refresh = self.sealer.open(sealed_refresh, "refresh", &account)?;
        let tokens = client.refresh(refresh.expose_secret()).await?;
        let sealed = self.sealer.seal(
            &tokens,
            &account.user_id,
            &account.issuer,
            &account.subject,
            self.rng.as_ref(),
        )?;
        let replaced = self
            .store
            .replace_oauth_tokens(&account.id, &account.tokens, &sealed)
            .await
            .map_err(store_error)?;
        if !replaced && !self.after_reseal(&account, &refresh, &sealed).await? {
            // A sign-in (or another instance) stored newer tokens meanwhile; theirs are as good.
            tracing::debug!(account = %account.id, "provider tokens were replaced concurrently");
        }
        Ok(Some(tokens.access_token))
    }

    /// After a lost compare-and-swap: when the row now holds the *same* refresh token sealed
    /// under a newer key (the re-sealing job ran meanwhile), our fresh tokens still replace it
    /// (the provider may have rotated the refresh token: dropping ours would break the link).
    async fn after_reseal(
        &self,
        account: &OAuthAccount,
        used_refresh: &SecretString,
        sealed: &SealedTokens,
    ) -> Result<bool, OAuthError> {
        let Some(now) = self
            .store
            .oauth_account_by_id(&account.user_id, &account.id)
            .await
            .map_err(store_error)?
        else {
            return Ok(false);
        };
        let same = match &now.tokens.refresh_token {
            Some(stored) => self.sealer.open(stored, "refresh", &now).is_ok_and(|t| {
                use subtle::ConstantTimeEq as _;
                bool::from(
                    t.expose_secret()
                        .as_bytes()
                        .ct_eq(used_refresh.expose_secret().as_bytes()),
                )
            }),
            None => false,
        };
        if !same {
            return Ok(false);
        }
        self.store
            .replace_oauth_tokens(&account.id, &now.tokens, sealed)
            .await
            .map_err(store_error)
    }

    /// `Some(answer)` when the stored tokens decide the answer without a refresh: the access
    /// token is fresh, or there is none.
    #[allow(clippy::option_option)]
    fn usable(&self, account: &OAuthAccount) -> Result<Option<Option<SecretString>>, OAuthError> {
        let Some(sealed_access) = &account.tokens.access_token else {
            return Ok(Some(None));
        };
        let now = self.clock.now();
        let fresh = account
            .tokens
            .expires_at
            .is_none_or(|at| now.saturating_add(REFRESH_MARGIN) < at);
        if fresh {
            return self
                .sealer
                .open(sealed_access, "access", account)
                .map(|t| Some(Some(t)));
        }
        Ok(None)
    }
}

fn store_error(e: crate::store::StoreError) -> OAuthError {
    tracing::error!(error = %crate::util::error_chain(&e), "OAuth store operation failed");
    OAuthError::Internal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::rng::OsRandom;
    use crate::secret::KeyRing;

    fn account(user: &str) -> OAuthAccount {
        OAuthAccount {
            id: "a1".into(),
            user_id: UserId::from_stored(user.into()),
            provider: "oidc".into(),
            issuer: "https://op.example".into(),
            subject: "alice".into(),
            email: None,
            tokens: SealedTokens::default(),
            created_at: Timestamp::EPOCH,
            last_used_at: None,
        }
    }

    #[test]
    fn tokens_are_sealed_per_user_and_account() {
        let ring = KeyRing::parse("k1:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=").unwrap();
        let sealer = TokenSealer::new(Sealer::new(&ring));
        let tokens = ProviderTokens {
            access_token: SecretString::from("access-plain-text"),
            refresh_token: Some(SecretString::from("refresh-plain-text")),
            expires_at: None,
            scopes: None,
        };
        let mut a = account("u1");
        let sealed = sealer
            .seal(&tokens, &a.user_id, &a.issuer, &a.subject, &OsRandom)
            .unwrap();
        let again = sealer
            .seal(&tokens, &a.user_id, &a.issuer, &a.subject, &OsRandom)
            .unwrap();
        let access = sealed.access_token.clone().unwrap();
        assert!(!access.contains("access-plain-text"));
        assert_ne!(
            Some(access.clone()),
            again.access_token,
            "fresh nonce each time"
        );
        assert_eq!(
            sealer.open(&access, "access", &a).unwrap().expose_secret(),
            "access-plain-text"
        );
        // The refresh token does not open as an access token, nor for another user.
        let refresh = sealed.refresh_token.clone().unwrap();
        assert!(sealer.open(&refresh, "access", &a).is_err());
        a.user_id = UserId::from_stored("u2".into());
        assert!(sealer.open(&access, "access", &a).is_err());
        // A flipped byte fails without a panic.
        let mut bytes = access.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(sealer.open(&flipped, "access", &account("u1")).is_err());
    }
}
