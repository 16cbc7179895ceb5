//! authkit without axum: plain hyper 1 + hyper-util + tower.
//!
//! authkit's pieces are ordinary tower types, so any tower-based stack can use them:
//! - [`AuthKit::layer`] (an [`authkit::AuthLayer`]) goes in front of everything once: cookies,
//!   CSRF checks and session loading;
//! - [`AuthKit::service`] (an [`authkit::AuthService`]) serves the auth endpoints; here the
//!   `/api/v1/auth` prefix is stripped by hand before calling it;
//! - [`RequireAuthLayer`] guards a protected service and hands it the
//!   [`AuthenticatedSession`] through the request extensions.
//!
//! Run it with `cargo run -p example-hyper-bare` and see `README.md` for a curl session.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use authkit::csrf::Origin;
use authkit::error::{ErrorCode, Problem, RequestId};
use authkit::secrets::LocalSecrets;
use authkit::{AuthKit, AuthenticatedSession, Body, ClientIp, RequireAuthLayer};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{Layer as _, Service, ServiceBuilder, ServiceExt as _};

/// The SQLite file (`mode=rwc` creates it on first run; authkit runs its migrations).
const DATABASE_URL: &str = "sqlite://example-hyper.db?mode=rwc";
/// Development keys, generated on first run and kept on disk so that sessions survive a
/// restart. Never use `LocalSecrets` in production.
const SECRETS_DIR: &str = "./.authkit/secrets";
/// Where the auth endpoints are mounted.
const AUTH_PREFIX: &str = "/api/v1/auth";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The whole app as one tower service. Generic over the request body so that `main` can feed
/// it hyper's `Incoming` and the tests `Full<Bytes>`.
fn app<B>(
    auth: &AuthKit,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ use<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let auth_endpoints = auth.service();
    // A protected service: `RequireAuthLayer` answers 401 problem+json unless the request
    // has a signed-in session, and otherwise puts the `AuthenticatedSession` in extensions.
    let portfolio = RequireAuthLayer::new().layer(tower::service_fn(portfolio::<B>));

    // A hand-written router. Each request gets its own clones of the inner services (they
    // are cheap to clone) and drives them with `oneshot` (poll_ready, then call).
    let router = tower::service_fn(move |req: Request<B>| {
        let auth_endpoints = auth_endpoints.clone();
        let portfolio = portfolio.clone();
        async move {
            match req.uri().path() {
                "/" => return Ok(home()),
                "/portfolio" => return portfolio.oneshot(req).await,
                _ => {}
            }
            match strip_auth_prefix(req.uri()) {
                Some(uri) => {
                    // `/api/v1/auth/register` → `/register`: the service routes on the rest.
                    let (mut parts, body) = req.into_parts();
                    parts.uri = uri;
                    auth_endpoints
                        .oneshot(Request::from_parts(parts, body))
                        .await
                }
                None => Ok(problem(ErrorCode::NotFound, req.headers())),
            }
        }
    });

    // Cookies, CSRF checks and session loading, once, in front of every route (the auth
    // endpoints need the session it loads too).
    ServiceBuilder::new().layer(auth.layer()).service(router)
}

/// `/api/v1/auth/register?x=1` → `/register?x=1`; `None` for paths outside the prefix.
fn strip_auth_prefix(uri: &Uri) -> Option<Uri> {
    let rest = match uri.path().strip_prefix(AUTH_PREFIX)? {
        "" => "/",
        rest if rest.starts_with('/') => rest,
        _ => return None, // e.g. `/api/v1/authors`
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// Public.
fn home() -> Response<Body> {
    Response::new(Body::from(
        "authkit hyper example: POST /api/v1/auth/register, then GET /portfolio\n",
    ))
}

/// Protected: only reached through `RequireAuthLayer`, which put the session in extensions.
async fn portfolio<B>(req: Request<B>) -> Result<Response<Body>, Infallible> {
    let Some(session) = req.extensions().get::<AuthenticatedSession>() else {
        // Only if the route was wired without `RequireAuthLayer`.
        return Ok(problem(ErrorCode::Internal, req.headers()));
    };
    let body = serde_json::json!({
        "user_id": session.user_id(),
        "holdings": [],
    });
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// An error in the same problem+json shape authkit uses.
fn problem(code: ErrorCode, headers: &http::HeaderMap) -> Response<Body> {
    Problem::new(code, &RequestId::from_headers(headers)).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse()?,
        Err(_) => 3000,
    };

    let auth = AuthKit::builder()
        .database(DATABASE_URL)
        .await?
        .secrets(LocalSecrets::new(SECRETS_DIR))
        .await?
        // Unsafe requests (POST, …) are only accepted from these origins.
        .allowed_origins([Origin::parse(&format!("http://localhost:{port}"))?])
        .build()
        .await?;
    let app = app::<hyper::body::Incoming>(&auth);

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://localhost:{port}");
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        // Tell authkit who the client is, so that sessions record its address. (Behind a
        // reverse proxy, resolve the address from trusted forwarding headers instead.)
        let service = ServiceBuilder::new()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientIp(peer.ip()));
                req
            })
            .service(app.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let service = TowerToHyperService::new(service);
            if let Err(e) = http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %e, %peer, "connection error");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use authkit::secret::{KeyId, KeyRing, SecretKey};
    use authkit::secrets::SecretKeys;
    use authkit::store::MemoryStore;
    use http::StatusCode;
    use http_body_util::{BodyExt as _, Full};
    use serde_json::{Value, json};

    use super::*;

    const ORIGIN: &str = "http://localhost:3000";

    /// A key ring with one 32-byte key (fixed bytes: fine for tests, never for real use).
    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(vec![(
            KeyId::new("k1").unwrap(),
            SecretKey::new(vec![byte; 32]).unwrap(),
        )])
        .unwrap()
    }

    /// authkit on memory, with in-process keys: no file, no database.
    async fn test_auth() -> AuthKit {
        AuthKit::builder()
            .store(Arc::new(MemoryStore::new()))
            .keys(SecretKeys {
                session: ring(1),
                encryption: ring(2),
                pepper: ring(3),
            })
            .allowed_origins([Origin::parse(ORIGIN).unwrap()])
            .build()
            .await
            .unwrap()
    }

    fn get(path: &str) -> Request<Full<Bytes>> {
        Request::get(path).body(Full::default()).unwrap()
    }

    async fn body_json(response: Response<Body>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// `name=value` of every `Set-Cookie`, joined into a `Cookie` header.
    fn cookie_header(response: &Response<Body>) -> String {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn strips_only_the_auth_prefix() {
        let strip = |s: &str| strip_auth_prefix(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(strip("/api/v1/auth/register").as_deref(), Some("/register"));
        assert_eq!(strip("/api/v1/auth/csrf?a=1").as_deref(), Some("/csrf?a=1"));
        assert_eq!(strip("/api/v1/auth").as_deref(), Some("/"));
        assert_eq!(strip("/api/v1/authors"), None);
        assert_eq!(strip("/portfolio"), None);
    }

    #[tokio::test]
    async fn home_is_public_and_unknown_paths_are_404() {
        let app = app::<Full<Bytes>>(&test_auth().await);
        let response = app.clone().oneshot(get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = app.oneshot(get("/nowhere")).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn register_then_portfolio() {
        let app = app::<Full<Bytes>>(&test_auth().await);

        // 1. Not signed in: 401 problem+json.
        let response = app.clone().oneshot(get("/portfolio")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );

        // 2. Register: 201, a session cookie, and the new user in the body.
        let credentials =
            json!({"email": "ada@example.org", "password": "vintage-orbit-lantern-42"});
        let mut request = Request::post("/api/v1/auth/register")
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(credentials.to_string())))
            .unwrap();
        // What `main` does per connection: sessions record the client address.
        request
            .extensions_mut()
            .insert(ClientIp(Ipv4Addr::LOCALHOST.into()));
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let cookie = cookie_header(&response);
        // Two cookies: the session, and the device cookie that exempts this browser from the
        // account's lockout.
        assert!(cookie.contains("authkit_session="), "{cookie}");
        assert!(cookie.contains("authkit_device="), "{cookie}");
        let registered = body_json(response).await;
        let user_id = registered["user"]["id"].as_str().unwrap().to_owned();
        assert_eq!(registered["session"]["ip"], "127.0.0.1");

        // 3. With the cookie: 200 and the same user id.
        let mut request = get("/portfolio");
        request
            .headers_mut()
            .insert(header::COOKIE, cookie.parse().unwrap());
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_json(response).await["user_id"], user_id.as_str());
    }
}
