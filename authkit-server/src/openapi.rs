//! The OpenAPI 3.1 document of the public listener.

use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "authkit-server",
        description = "Cookie-session authentication API. Errors are RFC 9457 application/problem+json with a stable `code` and the `request_id`. Tokens never appear in bodies: the session travels only in an HttpOnly cookie."
    ),
    paths(routes::live, routes::ready, routes::openapi_json),
    components(schemas(routes::Health)),
    tags((name = "health"), (name = "docs"))
)]
struct PlatformApi;

/// Platform endpoints merged with the auth endpoints mounted at `/api/v1/auth`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = PlatformApi::openapi();
    doc.merge(authkit::AuthKit::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}
