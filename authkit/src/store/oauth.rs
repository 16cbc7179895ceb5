//! What the OAuth flows persist: single-use sign-in transactions and linked provider accounts.

use async_trait::async_trait;

use super::{NewUser, StoreError};
use crate::audit::NewAuditEvent;
use crate::clock::Timestamp;
use crate::user::{UserId, UserRecord};

/// An OAuth sign-in in flight, stored when the browser is sent to the provider and taken
/// (deleted) by the first callback that presents its `state`.
#[derive(Clone)]
pub struct OAuthTransaction {
    /// SHA-256 of the `state` sent to the provider (the state itself is never stored).
    pub state_hash: [u8; 32],
    /// The configured provider name the state was minted for.
    pub provider: String,
    /// SHA-256 of the browser-binding value held in the transaction cookie.
    pub browser_hash: [u8; 32],
    /// The PKCE verifier and the OIDC nonce, sealed under the encryption key ring.
    pub sealed: String,
    /// Where the browser goes afterwards (already checked, see
    /// [`RedirectTarget`](crate::oauth::RedirectTarget)).
    pub redirect_to: String,
    /// For an explicit link: the user and the session (hash) that started it.
    pub link: Option<LinkIntent>,
    /// Creation time.
    pub created_at: Timestamp,
    /// The state is refused from this time on.
    pub expires_at: Timestamp,
}

/// The signed-in session an explicit link was started from.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkIntent {
    /// The user the account will be linked to.
    pub user_id: UserId,
    /// SHA-256 of the session token that started the link (the callback must carry it).
    pub session_hash: [u8; 32],
}

/// A provider account linked to a user, keyed by `(issuer, subject)`.
#[derive(Clone)]
pub struct OAuthAccount {
    /// Public id (a UUID), used by `DELETE /oauth/accounts/{id}`.
    pub id: String,
    /// The user it signs in.
    pub user_id: UserId,
    /// The configured provider name it was linked through.
    pub provider: String,
    /// The issuer (`iss` for OIDC; a fixed URL for GitHub and X).
    pub issuer: String,
    /// The provider's stable subject id (`sub`, GitHub's numeric `id`, X's `data.id`).
    pub subject: String,
    /// The e-mail address the provider reported when linked or last used, if any.
    pub email: Option<String>,
    /// The provider's tokens, sealed (never plain text at rest).
    pub tokens: SealedTokens,
    /// When it was linked.
    pub created_at: Timestamp,
    /// When it last signed the user in.
    pub last_used_at: Option<Timestamp>,
}

/// Access and refresh tokens sealed with [`Sealer`](crate::crypto::Sealer), bound to the user
/// and the account.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SealedTokens {
    /// The sealed access token.
    pub access_token: Option<String>,
    /// The sealed refresh token.
    pub refresh_token: Option<String>,
    /// When the access token expires (none: unknown or never).
    pub expires_at: Option<Timestamp>,
    /// The granted scopes, space-separated.
    pub scopes: Option<String>,
}

/// What [`OAuthStore::unlink_oauth_account`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Unlink {
    /// The account is gone (and its tokens with it).
    Done,
    /// No such account of this user.
    NotFound,
    /// Refused: it is the user's last way to sign in (no password, no other account).
    LastSignInMethod,
}

/// OAuth transactions and linked accounts. Every method is one statement or one transaction.
#[async_trait]
pub trait OAuthStore: Send + Sync + std::fmt::Debug {
    /// Stores a transaction.
    async fn insert_oauth_transaction(&self, tx: &OAuthTransaction) -> Result<(), StoreError>;
    /// Deletes and returns the unexpired transaction with this state hash and browser hash:
    /// exactly one of any number of concurrent callers gets it, so a state works once; and a
    /// callback presented by another browser neither gets it nor spends it.
    async fn take_oauth_transaction(
        &self,
        state_hash: &[u8; 32],
        browser_hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<OAuthTransaction>, StoreError>;
    /// Deletes expired transactions; how many.
    async fn delete_expired_oauth_transactions(&self, now: Timestamp) -> Result<u64, StoreError>;
    /// The account with this issuer and subject.
    async fn oauth_account(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthAccount>, StoreError>;
    /// The account with this public id, if it belongs to `user`.
    async fn oauth_account_by_id(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<OAuthAccount>, StoreError>;
    /// Every account of a user, oldest first.
    async fn oauth_accounts_for_user(&self, user: &UserId)
    -> Result<Vec<OAuthAccount>, StoreError>;
    /// In one transaction: creates `user` (without a password) and links `account` to it,
    /// writing `audit`. [`StoreError::Conflict`] (nothing written) when the address is taken
    /// or the `(issuer, subject)` is already linked.
    async fn create_user_with_oauth_account(
        &self,
        user: NewUser,
        account: &OAuthAccount,
        audit: &[NewAuditEvent],
    ) -> Result<UserRecord, StoreError>;
    /// Links `account` to its (existing) user and writes `audit`, in one transaction.
    /// [`StoreError::Conflict`] (nothing written) when the `(issuer, subject)` is linked
    /// already, to anyone.
    async fn link_oauth_account(
        &self,
        account: &OAuthAccount,
        audit: &[NewAuditEvent],
    ) -> Result<(), StoreError>;
    /// Records a sign-in through the account: its fresh tokens, the reported e-mail and the
    /// time.
    async fn record_oauth_login(
        &self,
        id: &str,
        email: Option<&str>,
        tokens: &SealedTokens,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Replaces the tokens of the account only if they are still `expected` (a refresh must
    /// not overwrite a newer sign-in's tokens); whether it replaced.
    async fn replace_oauth_tokens(
        &self,
        id: &str,
        expected: &SealedTokens,
        tokens: &SealedTokens,
    ) -> Result<bool, StoreError>;
    /// Up to `limit` accounts, after id `after` in id order, with an access or refresh token
    /// whose envelope does not start with `prefix` (`v1.<newest key id>.`): the re-sealing
    /// job's pages after a key rotation.
    async fn oauth_accounts_not_under(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OAuthAccount>, StoreError>;
    /// Deletes the user's account `id` with its tokens and writes `audit`, in one transaction,
    /// unless it is the user's last way to sign in: the user has no password and no other
    /// account (checked in the same transaction, so two concurrent unlinks cannot remove both).
    async fn unlink_oauth_account(
        &self,
        user: &UserId,
        id: &str,
        audit: &NewAuditEvent,
    ) -> Result<Unlink, StoreError>;
}

impl std::fmt::Debug for OAuthTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTransaction")
            .field("provider", &self.provider)
            .field("redirect_to", &self.redirect_to)
            .field("linking", &self.link.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LinkIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkIntent")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OAuthAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthAccount")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTokens")
            .field("has_access_token", &self.access_token.is_some())
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
