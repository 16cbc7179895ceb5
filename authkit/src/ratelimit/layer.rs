//! The per-client-address limit, as a tower layer inside the auth service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, Response};
use tower::{Layer, Service};

use super::RateLimiter;
use super::config::RateLimitConfig;
use super::key::{ClientBucket, Flow, RateKey};
use super::quota::Decision;
use crate::client::client_ip;
use crate::clock::Clock;
use crate::error::{ErrorCode, Problem, RequestId};

/// The flow a request to the auth service belongs to, by method and path relative to the
/// service's mount point; `None` for requests no address quota applies to.
pub(crate) fn flow_of(method: &Method, path: &str) -> Option<Flow> {
    if let Some(rest) = path.strip_prefix("/oauth/") {
        // Everything under `/oauth/` but the signed-in user's account list and unlinking.
        let accounts = rest == "accounts" || rest.starts_with("accounts/");
        let limited = (*method == Method::GET && !accounts)
            || (*method == Method::POST && rest.trim_end_matches('/').ends_with("/link"));
        return limited.then_some(Flow::OAuth);
    }
    if method != Method::POST {
        return None;
    }
    // `/login/` reaches no handler today, but the limit must not depend on the router's
    // trailing-slash policy.
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    match path {
        // Every route that checks a password: a stolen session must not be a password oracle.
        "/login" | "/reauthenticate" | "/password/change" => Some(Flow::Login),
        "/register" => Some(Flow::Register),
        "/password/forgot" | "/password/reset" => Some(Flow::PasswordReset),
        "/email/verify" | "/email/resend" => Some(Flow::EmailVerification),
        "/mfa/verify" | "/mfa/disable" | "/mfa/backup-codes" => Some(Flow::Mfa),
        _ => None,
    }
}

/// Seconds for `Retry-After`: rounded up, at least 1.
fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

/// Applies each flow's per-client-address [`Quota`](super::Quota) to `POST` requests of the
/// auth endpoints; see the [module docs](crate::ratelimit).
///
/// Mount it inside the auth service (it matches paths relative to the mount point:
/// `/login`, `/reauthenticate`, `/register`, `/password/forgot`, `/password/reset`,
/// `/email/verify`, `/email/resend`, `/mfa/verify`). A limited request is answered `429`
/// `rate_limited` problem+json with `Retry-After`; everything else passes untouched.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    config: Arc<RateLimitConfig>,
    clock: Arc<dyn Clock>,
}

impl RateLimitLayer {
    /// A layer counting in `limiter` with `config`'s quotas and `clock`'s time.
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        config: Arc<RateLimitConfig>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            limiter,
            config,
            clock,
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: Arc::clone(&self.limiter),
            config: Arc::clone(&self.config),
            clock: Arc::clone(&self.clock),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: Arc<dyn RateLimiter>,
    config: Arc<RateLimitConfig>,
    clock: Arc<dyn Clock>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The instance polled ready serves this request; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let check = flow_of(req.method(), req.uri().path()).and_then(|flow| {
            let quota = self.config.flow(flow).per_client?;
            let Some(ip) = client_ip(&req) else {
                // Once per process at warn (a misconfiguration: no ConnectInfo or ClientIp),
                // then at debug, so that the log is not flooded.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::debug!(flow = %flow, "no client address: per-address limit skipped");
                } else {
                    tracing::warn!(
                        flow = %flow,
                        "no client address on a rate-limited route: per-address limits are skipped; \
                         serve with ConnectInfo<SocketAddr> or insert authkit::ClientIp"
                    );
                }
                return None;
            };
            Some((flow, ip, quota))
        });
        let Some((flow, ip, quota)) = check else {
            return Box::pin(async move { inner.call(req).await.map(|r| r.map(Body::new)) });
        };
        let limiter = Arc::clone(&self.limiter);
        let now = self.clock.now();
        Box::pin(async move {
            let key = RateKey::client(flow, ip);
            match limiter.hit(&key, quota, now).await {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Limited { retry_after }) => {
                    let id = RequestId::from_headers(req.headers());
                    let secs = retry_after_secs(retry_after);
                    tracing::info!(
                        request_id = %id,
                        flow = %flow,
                        client = %ClientBucket::of(ip),
                        retry_after = secs,
                        "request refused by the per-address rate limit"
                    );
                    let problem = Problem::new(ErrorCode::RateLimited, &id).with_retry_after(secs);
                    return Ok(problem.into_response());
                }
                // Availability over strictness for the address limit: accounts keep their
                // lockout, which fails closed.
                Err(error) => {
                    tracing::error!(flow = %flow, error = ?error, "rate limiter unavailable: request passed unlimited");
                }
            }
            inner.call(req).await.map(|r| r.map(Body::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::IpAddr;

    use async_trait::async_trait;
    use http::{StatusCode, header};
    use tower::ServiceExt as _;

    use super::*;
    use crate::ClientIp;
    use crate::clock::{ManualClock, Timestamp};
    use crate::error::{PROBLEM_CONTENT_TYPE, REQUEST_ID_HEADER};
    use crate::ratelimit::{
        AttemptDecision, FlowLimits, LockoutKey, LockoutPolicy, MemoryRateLimiter, Quota,
        RateLimitError,
    };

    type Inner = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

    fn inner() -> Inner {
        tower::util::BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("handled")))
        }))
    }

    struct Harness {
        service: RateLimitService<Inner>,
        clock: ManualClock,
    }

    fn harness(config: RateLimitConfig) -> Harness {
        let clock = ManualClock::new(Timestamp::from_unix_seconds(1_700_000_000));
        let layer = RateLimitLayer::new(
            Arc::new(MemoryRateLimiter::new()),
            Arc::new(config),
            Arc::new(clock.clone()),
        );
        Harness {
            service: layer.layer(inner()),
            clock,
        }
    }

    fn req(method: Method, path: &str, ip: Option<&str>) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(REQUEST_ID_HEADER, "req-7")
            .body(Body::empty())
            .unwrap();
        if let Some(ip) = ip {
            req.extensions_mut()
                .insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
        }
        req
    }

    async fn status(h: &Harness, method: Method, path: &str, ip: &str) -> StatusCode {
        h.service
            .clone()
            .oneshot(req(method, path, Some(ip)))
            .await
            .unwrap()
            .status()
    }

    fn login_limit(burst: u32) -> RateLimitConfig {
        RateLimitConfig::default().with_flow(
            Flow::Login,
            FlowLimits::new(Some(Quota::per_minute(burst)), None),
        )
    }

    #[tokio::test]
    async fn limited_after_the_burst_with_retry_after() {
        let h = harness(login_limit(3)); // one every 20 s
        for _ in 0..3 {
            assert_eq!(status(&h, Method::POST, "/login", "203.0.113.9").await, 200);
        }
        let resp = h
            .service
            .clone()
            .oneshot(req(Method::POST, "/login", Some("203.0.113.9")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "20");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "rate_limited");
        assert_eq!(json["status"], 429);
        assert_eq!(json["request_id"], "req-7");
        // `reauthenticate` shares the login budget.
        assert_eq!(
            status(&h, Method::POST, "/reauthenticate", "203.0.113.9").await,
            429
        );
        // Another address is unaffected.
        assert_eq!(
            status(&h, Method::POST, "/login", "203.0.113.10").await,
            200
        );
        // Time refills the bucket.
        h.clock.advance(Duration::from_secs(20));
        assert_eq!(status(&h, Method::POST, "/login", "203.0.113.9").await, 200);
        assert_eq!(status(&h, Method::POST, "/login", "203.0.113.9").await, 429);
    }

    #[tokio::test]
    async fn ipv6_addresses_share_their_64() {
        let h = harness(login_limit(2));
        assert_eq!(
            status(&h, Method::POST, "/login", "2001:db8:1:2::1").await,
            200
        );
        assert_eq!(
            status(&h, Method::POST, "/login", "2001:db8:1:2:ffff::9").await,
            200
        );
        assert_eq!(
            status(
                &h,
                Method::POST,
                "/login",
                "2001:db8:1:2:1234:5678:9abc:def0"
            )
            .await,
            429
        );
        assert_eq!(
            status(&h, Method::POST, "/login", "2001:db8:1:3::1").await,
            200
        );
        // IPv4-mapped addresses count as their IPv4 address.
        assert_eq!(status(&h, Method::POST, "/login", "192.0.2.1").await, 200);
        assert_eq!(
            status(&h, Method::POST, "/login", "::ffff:192.0.2.1").await,
            200
        );
        assert_eq!(status(&h, Method::POST, "/login", "192.0.2.1").await, 429);
    }

    #[tokio::test]
    async fn flows_have_separate_budgets_and_other_requests_pass() {
        let mut config = RateLimitConfig::without_quotas();
        for flow in Flow::ALL {
            config.flow_mut(flow).per_client = Some(Quota::per_hour(1));
        }
        let h = harness(config);
        let ip = "198.51.100.4";
        for (path, flow) in [
            ("/login", Flow::Login),
            ("/register", Flow::Register),
            ("/password/forgot", Flow::PasswordReset),
            ("/password/reset", Flow::PasswordReset),
            ("/email/verify", Flow::EmailVerification),
            ("/email/resend", Flow::EmailVerification),
            ("/mfa/verify", Flow::Mfa),
            ("/oauth/google/link", Flow::OAuth),
        ] {
            assert_eq!(flow_of(&Method::POST, path), Some(flow));
        }
        for path in ["/oauth/google", "/oauth/google/callback", "/oauth/x/"] {
            assert_eq!(flow_of(&Method::GET, path), Some(Flow::OAuth), "{path}");
        }
        for (method, path) in [
            (Method::GET, "/oauth/accounts"),
            (Method::DELETE, "/oauth/accounts/abc"),
            (Method::POST, "/oauth/google"),
        ] {
            assert_eq!(flow_of(&method, path), None, "{path}");
        }
        assert_eq!(status(&h, Method::POST, "/register", ip).await, 200);
        assert_eq!(status(&h, Method::POST, "/register", ip).await, 429);
        assert_eq!(status(&h, Method::POST, "/password/forgot", ip).await, 200);
        assert_eq!(status(&h, Method::POST, "/password/reset", ip).await, 429);
        assert_eq!(status(&h, Method::POST, "/mfa/verify", ip).await, 200);
        assert_eq!(status(&h, Method::POST, "/login/", ip).await, 200);
        assert_eq!(status(&h, Method::POST, "/login", ip).await, 429);
        // GET and unrelated paths are never limited.
        for _ in 0..5 {
            assert_eq!(status(&h, Method::GET, "/login", ip).await, 200);
            assert_eq!(status(&h, Method::GET, "/session", ip).await, 200);
            assert_eq!(status(&h, Method::POST, "/logout", ip).await, 200);
            assert_eq!(status(&h, Method::PUT, "/register", ip).await, 200);
        }
    }

    #[tokio::test]
    async fn no_client_address_skips_the_address_limit() {
        let h = harness(login_limit(1));
        for _ in 0..3 {
            let resp = h
                .service
                .clone()
                .oneshot(req(Method::POST, "/login", None))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }

    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl RateLimiter for Broken {
        async fn hit(
            &self,
            _: &RateKey,
            _: Quota,
            _: Timestamp,
        ) -> Result<Decision, RateLimitError> {
            Err(RateLimitError::Backend("connection refused".into()))
        }
        async fn begin_attempt(
            &self,
            _: &LockoutKey,
            _: &LockoutPolicy,
            _: Timestamp,
        ) -> Result<AttemptDecision, RateLimitError> {
            Err(RateLimitError::Backend("connection refused".into()))
        }
        async fn attempt_succeeded(&self, _: &LockoutKey) -> Result<(), RateLimitError> {
            Err(RateLimitError::Backend("connection refused".into()))
        }
        async fn clear(&self, _: &LockoutKey) -> Result<(), RateLimitError> {
            Err(RateLimitError::Backend("connection refused".into()))
        }
    }

    #[tokio::test]
    async fn a_backend_failure_lets_requests_through() {
        let layer = RateLimitLayer::new(
            Arc::new(Broken),
            Arc::new(login_limit(1)),
            Arc::new(ManualClock::new(Timestamp::EPOCH)),
        );
        let service = layer.layer(inner());
        for _ in 0..3 {
            let resp = service
                .clone()
                .oneshot(req(Method::POST, "/login", Some("192.0.2.3")))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }
}
