//! Integration tests of authkit through the reference server's HTTP API.
//!
//! One binary (fast to link); the store-dependent suite runs on memory, SQLite and, when
//! `AUTHKIT_TEST_DATABASE_URL` is set (always in CI), PostgreSQL.

// Test code: failing loudly is the point.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod accounts;
mod flows;
mod mfa;
mod oauth;
mod oauth_support;
mod secrets;
mod security;
mod support;
