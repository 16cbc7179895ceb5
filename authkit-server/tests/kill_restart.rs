//! Mails queued when the server is killed (SIGKILL, no graceful shutdown) are delivered after
//! it restarts: the queue is durable in the database (MISSION.md §4: "nothing is lost when an
//! instance is killed").
//!
//! Runs the real `authkit-server` binary on SQLite in a temporary directory: first with the job
//! workers off, so that the mails stay queued; then, after `kill -9`, with the workers on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed with SIGKILL when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, jobs_enabled: bool) -> Server {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_authkit-server"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTHKIT_LISTEN_ADDR", addr.to_string())
        .env(
            "AUTHKIT_INTERNAL_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("AUTHKIT_PUBLIC_URL", "http://localhost:8080")
        .env(
            "AUTHKIT_DATABASE_URL",
            format!("sqlite://{}/authkit.db?mode=rwc", dir.display()),
        )
        .env("AUTHKIT_DEV_MAILBOX_DIR", dir.join("mail"))
        .env("AUTHKIT_SECRETS__LOCAL_DIR", dir.join("secrets"))
        .env("AUTHKIT_AUDIT__ARCHIVE_DIR", dir.join("archive"))
        .env("AUTHKIT_JOBS__ENABLED", jobs_enabled.to_string())
        .env("AUTHKIT_JOBS__POLL_INTERVAL", "50ms")
        // Small argon2 cost is refused; keep the default and one hashing thread.
        .env("AUTHKIT_PASSWORD__MAX_CONCURRENT", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("authkit-server starts");
    let server = Server { child, addr };
    wait_until(Duration::from_secs(60), || {
        request(addr, "GET", "/api/v1/health/live", None).is_some_and(|(s, _)| s == 200)
    });
    server
}

/// One HTTP/1.1 request; `(status, body)` or `None` if the server is not answering.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:8080\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

// A real child process runs on the wall clock: a deadline for waiting on it (not a timing
// assertion) has to read it.
#[allow(clippy::disallowed_methods)]
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mails(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("mail"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn mails_queued_before_a_kill_are_sent_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = (0..3).map(|i| format!("queued-{i}@example.com")).collect();
    {
        let server = start(dir.path(), false);
        for addr in &addresses {
            let body = format!(r#"{{"email":"{addr}","password":"correct horse battery staple"}}"#);
            let (status, text) =
                request(server.addr, "POST", "/api/v1/auth/register", Some(&body)).unwrap();
            assert_eq!(status, 202, "{text}");
        }
        // A 202 means the mail is durably queued; the workers are off, so none is sent.
        assert!(mails(dir.path()).is_empty());
        // Dropping `server` sends SIGKILL: no graceful shutdown, no flush.
    }
    let server = start(dir.path(), true);
    wait_until(Duration::from_secs(60), || mails(dir.path()).len() >= 3);
    let mut delivered: Vec<String> = mails(dir.path())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    delivered.sort();
    for addr in &addresses {
        assert!(
            delivered.iter().any(|m| m.contains(&format!("To: {addr}"))),
            "no mail for {addr}"
        );
    }
    // Each exactly once, and the links work: the first one completes its sign-up.
    assert_eq!(mails(dir.path()).len(), 3);
    let mail = delivered.iter().find(|m| m.contains("queued-0@")).unwrap();
    let at = mail.find("#token=").expect("a link") + 7;
    let token: String = mail[at..].chars().take(43).collect();
    let (status, text) = request(
        server.addr,
        "POST",
        "/api/v1/auth/email/verify",
        Some(&format!(r#"{{"token":"{token}"}}"#)),
    )
    .unwrap();
    assert_eq!(status, 201, "{text}");
}
