//! OAuth 2.0 / OpenID Connect sign-in (in progress).
//!
//! What exists so far is the part every flow needs first: [`RedirectTarget`], the validation
//! of where a browser may be sent after signing in (SECURITY.md #33). The providers, the
//! authorization-code flow with PKCE, state and nonce, account linking and token storage
//! follow; `docs/design/oauth-research.md` records the crates and the test harness chosen
//! for them.

mod redirect;

pub use redirect::{MAX_REDIRECT_LEN, RedirectTarget};
