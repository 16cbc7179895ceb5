//! The session layer's cost per request on a cache hit: the same trivial handler with and
//! without `AuthLayer` in front, with a valid session cookie.
//!
//! `cargo bench -p authkit --bench session_layer`

// Benchmark set-up: a failure should stop the run loudly.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use authkit::secret::KeyRing;
use authkit::secrets::SecretKeys;
use authkit::store::MemoryStore;
use authkit::{AuthKit, Body, Session};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use tower::{Layer as _, ServiceExt as _, service_fn};

fn keys() -> SecretKeys {
    let ring = || KeyRing::parse("b1:QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=").unwrap();
    SecretKeys {
        session: ring(),
        encryption: ring(),
        pepper: ring(),
    }
}

async fn handler(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    // Touch the session the way a protected handler would.
    let signed_in = req
        .extensions()
        .get::<Session>()
        .is_some_and(|s| s.authenticated().is_ok());
    Ok(Response::new(Body::from(if signed_in {
        "ok"
    } else {
        "anonymous"
    })))
}

async fn setup() -> (AuthKit, String) {
    let auth = AuthKit::builder()
        .store(Arc::new(MemoryStore::new()))
        .keys(keys())
        .allowed_origins([authkit::csrf::Origin::parse("http://localhost").unwrap()])
        .build()
        .await
        .unwrap();
    let register = Request::post("/register")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "http://localhost")
        .body(Body::from(
            r#"{"email":"bench@example.com","password":"correct horse battery staple"}"#,
        ))
        .unwrap();
    let response = auth
        .layer()
        .layer(auth.service())
        .oneshot(register)
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .unwrap();
    (auth, cookie)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (auth, cookie) = rt.block_on(setup());
    let request = || {
        Request::get("/portfolio")
            .header(header::COOKIE, cookie.as_str())
            .body(Body::empty())
            .unwrap()
    };

    let mut group = c.benchmark_group("session_layer");
    group.bench_function("bare_handler", |b| {
        let svc = service_fn(handler);
        b.to_async(&rt).iter(|| svc.oneshot(request()));
    });
    group.bench_function("auth_layer_cache_hit", |b| {
        let svc = auth.layer().layer(service_fn(handler));
        b.to_async(&rt).iter(|| svc.clone().oneshot(request()));
    });
    group.bench_function("auth_layer_no_cookie", |b| {
        let svc = auth.layer().layer(service_fn(handler));
        b.to_async(&rt).iter(|| {
            svc.clone()
                .oneshot(Request::get("/").body(Body::empty()).unwrap())
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
