//! The public router: platform endpoints, the auth service and the HTTP hardening layers.

use std::time::Duration;

use authkit::ErrorCode;
use authkit::error::{Problem, RequestId};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::App;
use crate::http_layers;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `{status}` of the health endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`, `degraded` or `down`.
    status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/api/v1/health/live", tag = "health",
    responses((status = 200, body = Health)))]
pub(crate) async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers within two seconds (`degraded` while a secret refresh
/// fails and its last good value is served, or while the provider holds a change this
/// instance refused).
#[utoipa::path(get, path = "/api/v1/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn ready(State(app): State<App>) -> Response {
    // The database, and the job queue's own pool on it (mail cannot be queued without it).
    let checks = async {
        if let Err(e) = app.store().ping().await {
            // Refused credentials: the password may have rotated before the refresher saw it.
            if e.is_auth_failure() {
                app.refresh_secrets_soon();
            }
            return Err(e.to_string());
        }
        app.jobs().ping().await.map_err(|e| e.to_string())
    };
    let failure = match tokio::time::timeout(Duration::from_secs(2), checks).await {
        Ok(Ok(())) => {
            // Serving the last good value of a secret the provider no longer answers for.
            let stale = app.secrets_refused()
                || app
                    .secrets()
                    .is_some_and(|cache| cache.status().iter().any(|s| s.is_stale()));
            let status = if stale { "degraded" } else { "ok" };
            return Json(Health { status }).into_response();
        }
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_owned(),
    };
    tracing::warn!(error = %failure, "readiness: dependency check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health { status: "down" }),
    )
        .into_response()
}

/// The OpenAPI 3.1 document of the public listener.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "docs",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Response {
    match crate::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not render the OpenAPI document");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn not_found(headers: axum::http::HeaderMap) -> Response {
    Problem::new(ErrorCode::NotFound, &RequestId::from_headers(&headers)).into_response()
}

/// A body shaped like `GET /api/v1/auth/session`, served with no session layer in front (and,
/// at `/api/v1/bench/layered`, behind it): the baselines `scripts/loadtest.sh` subtracts.
async fn bench_bare() -> Response {
    const BODY: &str = r#"{"user":{"id":"00000000-0000-4000-8000-000000000000","email":"bench@example.com","email_verified":false,"mfa_enabled":false,"created_at":"2026-01-01T00:00:00Z"},"session":{"id":"AAAAAAAAAAAAAAAAAAAAAA","aal":"aal1","created_at":"2026-01-01T00:00:00Z","last_seen_at":"2026-01-01T00:00:00Z","authenticated_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T12:00:00Z","idle_expires_at":"2026-01-01T00:30:00Z","current":true,"ip":"127.0.0.1","user_agent":"oha"}}"#;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        BODY,
    )
        .into_response()
}

pub(crate) fn router(app: &App) -> Router {
    let config = app.config();
    let settings = &config.config.server;

    let protected = Router::new()
        .route("/api/v1/health/live", get(live))
        .route("/api/v1/health/ready", get(ready))
        .route("/api/v1/openapi.json", get(openapi_json))
        .nest_service("/api/v1/auth", app.auth().service())
        .fallback(not_found)
        .with_state(app.clone())
        .layer(app.auth().layer());

    let mut router = protected;
    if settings.bench_routes {
        // The same static body twice: once bare, once behind the auth layer, so that the load
        // test can measure the layer alone (cookie parsing, CSRF, session lookup) as well as
        // the full `GET /session` route.
        router = router
            .merge(Router::new().route("/api/v1/bench/bare", get(bench_bare)))
            .merge(
                Router::new()
                    .route("/api/v1/bench/layered", get(bench_bare))
                    .layer(app.auth().layer()),
            );
    }

    let origins: Vec<_> = config
        .allowed_origins
        .iter()
        .filter_map(|o| o.as_str().parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::CONTENT_TYPE, authkit::csrf::CSRF_HEADER, REQUEST_ID])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));

    // Outermost last: request id → trace → propagate id → security headers → CORS →
    // problem+json for bare errors → timeout → body limit → client address → app.
    router
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::<[ipnet::IpNet]>::from(config.trusted_proxies.as_slice()),
            http_layers::resolve_client_ip,
        ))
        .layer(RequestBodyLimitLayer::new(settings.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(axum::middleware::from_fn(
            http_layers::problem_for_bare_errors,
        ))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            config.config.profile == crate::Profile::Production,
            http_layers::security_headers,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(http_layers::request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
