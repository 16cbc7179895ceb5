//! The one HTTP client every provider call goes through: no redirects, timeouts, a body cap.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{HttpClientError, HttpRequest, HttpResponse};

/// Largest provider response read (discovery documents and key sets are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// Why a provider request failed. Holds no response body: token responses carry secrets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("request to the provider failed: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("provider response larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("invalid provider request or response")]
    Invalid,
}

/// A `reqwest` client that never follows redirects (a provider endpoint that redirects is
/// misconfigured or compromised) and gives up after a timeout.
#[derive(Clone, Debug)]
pub(crate) struct ProviderHttp {
    inner: reqwest::Client,
}

impl ProviderHttp {
    pub(crate) fn new(timeout: Duration) -> Result<Self, HttpError> {
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            // GitHub's API refuses requests without a User-Agent.
            .user_agent(concat!("authkit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpError::Transport)?;
        Ok(Self { inner })
    }

    /// Sends `request` and reads at most [`MAX_BODY`] bytes of the answer.
    pub(crate) async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request: reqwest::Request = request.try_into().map_err(HttpError::Transport)?;
        let mut response = self
            .inner
            .execute(request)
            .await
            .map_err(HttpError::Transport)?;
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HttpError::Transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut response = builder.body(body).map_err(|_| HttpError::Invalid)?;
        // GitHub answers token errors with 200 and `{"error": …}`; give them an error status
        // so that the OAuth client reads them as the error response they are.
        if response.status() == http::StatusCode::OK && is_error_object(response.body()) {
            *response.status_mut() = http::StatusCode::BAD_REQUEST;
        }
        Ok(response)
    }

    /// A GET with a bearer token, for the user APIs of GitHub and X.
    pub(crate) async fn get_json(
        &self,
        url: url::Url,
        bearer: &str,
        accept: &'static str,
    ) -> Result<(http::StatusCode, Vec<u8>), HttpError> {
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .header(http::header::AUTHORIZATION, format!("Bearer {bearer}"))
            .header(http::header::ACCEPT, accept)
            .header("x-github-api-version", "2022-11-28")
            .body(Vec::new())
            .map_err(|_| HttpError::Invalid)?;
        let response = self.send(request).await?;
        Ok((response.status(), response.into_body()))
    }
}

fn is_error_object(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct MaybeError {
        error: Option<String>,
        access_token: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<MaybeError>(body)
        .is_ok_and(|m| m.error.is_some() && m.access_token.is_none())
}

impl<'c> openidconnect::AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpClientError<HttpError>;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            self.send(request)
                .await
                .map_err(|e| HttpClientError::Reqwest(Box::new(e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_style_errors_are_recognised() {
        assert!(is_error_object(
            br#"{"error":"bad_verification_code","error_description":"x"}"#
        ));
        assert!(!is_error_object(
            br#"{"access_token":"gho_x","token_type":"bearer"}"#
        ));
        assert!(!is_error_object(b"not json"));
        assert!(!is_error_object(br#"[1,2]"#));
    }
}
