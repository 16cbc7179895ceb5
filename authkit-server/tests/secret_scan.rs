//! Fails `cargo test --workspace` (and so CI) when a secret-looking literal is committed.
//!
//! # What it scans
//!
//! Every file under the workspace root (`CARGO_MANIFEST_DIR/..`), except build output and
//! vendored or generated trees: directories named `target`, `.git`, `node_modules` and
//! `.authkit` at any depth, `fuzz/corpus`, `fuzz/target` and `fuzz/artifacts`; the files
//! `Cargo.lock` and `package-lock.json`; binary files (a NUL byte in the first 8 KiB) and files
//! over 2 MiB. No git is needed, so untracked files are scanned too.
//!
//! Only high-signal patterns are matched (see [`patterns`]): AWS access key ids, private key
//! blocks, GitHub, Slack, Vault, Stripe-live and Google API tokens, authkit's own
//! `kid:base64key` ring with a full-length key, passwords in URL userinfo, and — only when the
//! value has high Shannon entropy — `password`/`secret`/`token`/`api_key` assignments. Known
//! test-vector shapes are filtered out in code: a ring key whose bytes are all equal or whose
//! base64 uses fewer than 10 distinct characters, and obviously fake URL passwords
//! (`s3cret`, `hunter2`, `${VAR}`, `<password>`, …).
//!
//! # Why a test rather than detect-secrets
//!
//! `docs/design/secrets-research.md` §4: detect-secrets 1.5.0 reported 86 findings in 57 files
//! on this tree, none of them a real secret (enum-to-string maps, alphabets, RFC test vectors,
//! redaction-test URLs), and CI use needs a committed `.secrets.baseline` whose line-based
//! entries churn whenever the lines move. gitleaks is not installable from a registry here. A
//! test runs with the normal `cargo test --workspace`, has no extra tooling, and its few
//! precise patterns keep the noise at zero.
//!
//! # How to allowlist a finding
//!
//! First make sure it is not a real secret (if it is: revoke it, then remove it). Then add a
//! line to `authkit-server/tests/secret_scan_allowlist.txt`, TAB-separated:
//!
//! ```text
//! path/from/workspace/root<TAB>pattern-name<TAB>sha256-prefix<TAB>why this is not a secret
//! ```
//!
//! The failure message prints the line to add (with the hash of the matched text). Entries are
//! keyed by path, pattern and the hash of the match, not by line number, so edits elsewhere in
//! the file do not churn them. An entry that no longer matches anything fails the test too, so
//! the list stays small and reviewed.
//!
//! Planted secrets in [`scanner_catches_planted_secrets`] are assembled at run time from pieces
//! so that this file itself never contains a literal that matches.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;

/// Directory names skipped at any depth.
const SKIP_DIR_NAMES: &[&str] = &["target", ".git", "node_modules", ".authkit"];
/// Directories skipped by their path from the scanned root.
const SKIP_DIR_PATHS: &[&str] = &["fuzz/corpus", "fuzz/target", "fuzz/artifacts"];
/// File names skipped at any depth (lock files: checksums look like secrets, and are not).
const SKIP_FILE_NAMES: &[&str] = &["Cargo.lock", "package-lock.json"];
/// Larger files are skipped.
const MAX_FILE_SIZE: u64 = 2 * 1024 * 1024;
/// A NUL byte within this prefix marks a file as binary.
const BINARY_SNIFF_LEN: usize = 8 * 1024;
/// Hex digits of the SHA-256 printed for, and required in, allowlist entries.
const HASH_PREFIX_LEN: usize = 16;
/// The allowlist, relative to the workspace root.
const ALLOWLIST: &str = "authkit-server/tests/secret_scan_allowlist.txt";

/// Extra check run on a regex match before it counts as a finding.
#[derive(Clone, Copy, Debug)]
enum Filter {
    /// Every match is a finding.
    None,
    /// `kid:base64key`: only a real-length key that is not a test vector (one repeated byte,
    /// few distinct characters) is.
    KeyRing,
    /// URL userinfo: obvious placeholder passwords are not.
    UrlPlaceholderPassword,
    /// Keyword assignment: only a high-entropy value is.
    HighEntropyValue,
}

#[derive(Debug)]
struct Pattern {
    name: &'static str,
    regex: Regex,
    filter: Filter,
}

/// The patterns, each with the name used in findings and allowlist entries.
fn patterns() -> Vec<Pattern> {
    let p = |name, re: &str, filter| Pattern {
        name,
        regex: Regex::new(re).unwrap(),
        filter,
    };
    vec![
        p(
            "aws-access-key-id",
            r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
            Filter::None,
        ),
        p(
            "private-key-block",
            r"-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----",
            Filter::None,
        ),
        p(
            "github-token",
            r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
            Filter::None,
        ),
        p(
            "github-fine-grained-pat",
            r"github_pat_[A-Za-z0-9_]{22,}",
            Filter::None,
        ),
        p("slack-token", r"xox[abprs]-[A-Za-z0-9-]{10,}", Filter::None),
        p(
            "vault-service-token",
            r"\bhvs\.[A-Za-z0-9_-]{24,}",
            Filter::None,
        ),
        p(
            "stripe-live-key",
            r"\b[sr]k_live_[A-Za-z0-9]{16,}",
            Filter::None,
        ),
        p("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b", Filter::None),
        p(
            "authkit-key-ring",
            // A key id, `:`, then a base64 run; the filter keeps runs that decode to a key of
            // at least 32 bytes, in either alphabet `KeyRing::parse` accepts.
            r"\b[A-Za-z0-9_-]{1,32}:[A-Za-z0-9+/_-]{43,}={0,2}",
            Filter::KeyRing,
        ),
        p(
            "url-password",
            r#"[a-z][a-z0-9+.-]*://[^:/\s@'"]+:[^@\s'"/]{3,}@"#,
            Filter::UrlPlaceholderPassword,
        ),
        p(
            "secret-assignment",
            r#"(?i)(password|passwd|secret|token|api_?key)["']?\s*[:=]\s*"([^"\n]{16,})""#,
            Filter::HighEntropyValue,
        ),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    /// Relative to the scanned root, `/`-separated.
    path: String,
    line: usize,
    pattern: &'static str,
    matched: String,
}

impl Finding {
    fn hash_prefix(&self) -> String {
        sha256_hex(self.matched.as_bytes())[..HASH_PREFIX_LEN].to_owned()
    }

    /// The first four characters and an ellipsis: never the whole secret.
    fn preview(&self) -> String {
        let head: String = self.matched.chars().take(4).collect();
        format!("{head}…")
    }
}

// ---------------------------------------------------------------------------------------------
// Walking

/// Files to scan under `root`, as paths relative to it, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        // Other processes (tests, builds) may delete directories and files while we walk: what
        // has vanished has nothing to scan. Any other error fails loudly.
        let entries = match fs::read_dir(root.join(&rel_dir)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            result => {
                result.unwrap_or_else(|e| panic!("read_dir {}: {e}", root.join(&rel_dir).display()))
            }
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let rel = rel_dir.join(&*name);
            // Symlinks are not followed (no loops, nothing outside the tree).
            let file_type = match entry.file_type() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                result => result.unwrap(),
            };
            if file_type.is_dir() {
                if !skip_dir(&name, &rel) {
                    stack.push(rel);
                }
            } else if file_type.is_file() && !SKIP_FILE_NAMES.contains(&&*name) {
                files.push(rel);
            }
        }
    }
    files.sort();
    files
}

fn skip_dir(name: &str, rel: &Path) -> bool {
    SKIP_DIR_NAMES.contains(&name) || SKIP_DIR_PATHS.contains(&slash_path(rel).as_str())
}

fn slash_path(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The text of a file, or `None` for files that are skipped (too large, binary, vanished).
fn read_text(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > MAX_FILE_SIZE {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // Other processes may delete files while we walk; a vanished file has nothing to scan.
    fs::File::open(path).ok()?.read_to_end(&mut bytes).ok()?;
    if bytes[..bytes.len().min(BINARY_SNIFF_LEN)].contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Scanning

#[derive(Debug)]
struct Scan {
    files_scanned: usize,
    findings: Vec<Finding>,
}

/// Scans every file [`walk`] yields under `root`.
fn scan_tree(root: &Path, patterns: &[Pattern]) -> Scan {
    let mut scan = Scan {
        files_scanned: 0,
        findings: Vec::new(),
    };
    for rel in walk(root) {
        let Some(text) = read_text(&root.join(&rel)) else {
            continue;
        };
        scan.files_scanned += 1;
        scan.findings
            .extend(scan_text(&slash_path(&rel), &text, patterns));
    }
    scan.findings.sort();
    scan
}

fn scan_text(path: &str, text: &str, patterns: &[Pattern]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Byte ranges already reported by a specific pattern: the generic keyword pattern does not
    // report the same literal again (`"access_token":"gho_…"` is one finding, not two).
    let mut reported: Vec<std::ops::Range<usize>> = Vec::new();
    let (generic, specific): (Vec<&Pattern>, Vec<&Pattern>) = patterns
        .iter()
        .partition(|p| matches!(p.filter, Filter::HighEntropyValue));
    for pattern in specific.into_iter().chain(generic) {
        for caps in pattern.regex.captures_iter(text) {
            let whole = caps.get(0).unwrap();
            if !is_finding(pattern.filter, &caps) {
                continue;
            }
            if matches!(pattern.filter, Filter::HighEntropyValue)
                && reported
                    .iter()
                    .any(|r| r.start < whole.end() && whole.start() < r.end)
            {
                continue;
            }
            reported.push(whole.range());
            let line = 1 + text.as_bytes()[..whole.start()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            findings.push(Finding {
                path: path.to_owned(),
                line,
                pattern: pattern.name,
                matched: whole.as_str().to_owned(),
            });
        }
    }
    findings
}

fn is_finding(filter: Filter, caps: &regex::Captures<'_>) -> bool {
    let whole = caps.get(0).unwrap().as_str();
    match filter {
        Filter::None => true,
        Filter::KeyRing => {
            let (_, key) = whole.split_once(':').unwrap();
            decode_ring_key(key).is_some_and(|bytes| !is_key_test_vector(key, &bytes))
        }
        Filter::UrlPlaceholderPassword => {
            // Userinfo is user, `:`, password (the user part has no `:`), then the final `@`.
            let userinfo = &whole[whole.find("://").unwrap() + 3..whole.len() - 1];
            let (_, password) = userinfo.split_once(':').unwrap();
            !is_placeholder_password(password)
        }
        Filter::HighEntropyValue => {
            let value = caps.get(2).unwrap().as_str();
            value.chars().count() >= 20 && shannon_entropy(value) >= 4.0
        }
    }
}

/// The bytes of a `kid:key` ring key as `KeyRing::parse` decodes them (standard base64, or
/// URL-safe), if they are at least 32 bytes. Hex text is a digest (`sha256:…`), not a key.
fn decode_ring_key(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    if text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE.decode(text))
        .ok()?;
    (bytes.len() >= 32).then_some(bytes)
}

/// A key that is obviously a fixed test vector: all bytes equal (`[1; 32]`), or a base64 text
/// with fewer than 10 distinct characters (`AAAA…`, short repeating patterns).
fn is_key_test_vector(text: &str, bytes: &[u8]) -> bool {
    let distinct: BTreeSet<char> = text.trim_end_matches('=').chars().collect();
    distinct.len() < 10 || bytes.windows(2).all(|w| w[0] == w[1])
}

/// Substrings (compared lower-case) of URL passwords that are obviously not real.
const PLACEHOLDER_PASSWORDS: &[&str] = &[
    "secret", "s3cret", "pass", "p%40ss", "hunter2", "example", "xxx", "***", "redacted",
    "changeme", "${", "<",
];

fn is_placeholder_password(password: &str) -> bool {
    let lower = password.to_ascii_lowercase();
    PLACEHOLDER_PASSWORDS.iter().any(|p| lower.contains(p))
        // `pw`, `pw-2`: as a prefix only, since two letters occur by chance in random text.
        || lower.starts_with("pw")
        || is_format_placeholder(password)
}

/// `{password}` / `{}`: a Rust format argument, not a value.
fn is_format_placeholder(password: &str) -> bool {
    password
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .is_some_and(|inner| inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Shannon entropy in bits per character.
fn shannon_entropy(s: &str) -> f64 {
    let mut counts = std::collections::BTreeMap::<char, usize>::new();
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let len = s.chars().count() as f64;
    counts
        .values()
        .map(|&n| {
            let p = n as f64 / len;
            -p * p.log2()
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Allowlist

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowEntry {
    line: usize,
    path: String,
    pattern: String,
    hash_prefix: String,
}

impl AllowEntry {
    fn matches(&self, f: &Finding) -> bool {
        self.path == f.path && self.pattern == f.pattern && f.hash_prefix() == self.hash_prefix
    }
}

/// Parses the allowlist; every malformed line is an error.
fn parse_allowlist(text: &str, patterns: &[Pattern]) -> Result<Vec<AllowEntry>, Vec<String>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = raw.split('\t').collect();
        let [path, pattern, hash, reason] = fields[..] else {
            errors.push(format!(
                "line {line}: want 4 TAB-separated fields (path, pattern, hash, reason), got {}",
                fields.len()
            ));
            continue;
        };
        if !patterns.iter().any(|p| p.name == pattern) {
            errors.push(format!("line {line}: unknown pattern name {pattern:?}"));
        }
        if hash.len() != HASH_PREFIX_LEN || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(format!(
                "line {line}: hash must be the {HASH_PREFIX_LEN} hex digits printed by the test"
            ));
        }
        if reason.trim().is_empty() {
            errors.push(format!("line {line}: a reason is required"));
        }
        entries.push(AllowEntry {
            line,
            path: path.to_owned(),
            pattern: pattern.to_owned(),
            hash_prefix: hash.to_ascii_lowercase(),
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Findings no entry explains, and entries that explain no finding (stale).
fn apply_allowlist<'a>(
    findings: &'a [Finding],
    entries: &'a [AllowEntry],
) -> (Vec<&'a Finding>, Vec<&'a AllowEntry>) {
    let unexplained = findings
        .iter()
        .filter(|f| !entries.iter().any(|e| e.matches(f)))
        .collect();
    let stale = entries
        .iter()
        .filter(|e| !findings.iter().any(|f| e.matches(f)))
        .collect();
    (unexplained, stale)
}

fn report(unexplained: &[&Finding], stale: &[&AllowEntry]) -> String {
    let mut msg = String::new();
    if !unexplained.is_empty() {
        let _ = writeln!(
            msg,
            "{} secret-looking literal(s) found:\n",
            unexplained.len()
        );
        for f in unexplained {
            let _ = writeln!(
                msg,
                "  {}:{} {}  preview: {}  sha256-prefix: {}",
                f.path,
                f.line,
                f.pattern,
                f.preview(),
                f.hash_prefix()
            );
        }
        let _ = writeln!(
            msg,
            "\nIf one is a real secret: revoke it, then remove it from the tree (and its history).\n\
             If it is not, add a TAB-separated line to {ALLOWLIST}:\n"
        );
        for f in unexplained {
            let _ = writeln!(
                msg,
                "  {}\t{}\t{}\t<why this is not a secret>",
                f.path,
                f.pattern,
                f.hash_prefix()
            );
        }
    }
    if !stale.is_empty() {
        let _ = writeln!(
            msg,
            "\n{} stale allowlist entr(y/ies) in {ALLOWLIST} (they match nothing; delete them):",
            stale.len()
        );
        for e in stale {
            let _ = writeln!(
                msg,
                "  line {}: {} {} {}",
                e.line, e.path, e.pattern, e.hash_prefix
            );
        }
    }
    msg
}

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for allowlist hashes without another dependency.

fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(v);
        }
    }
    h.iter().fold(String::with_capacity(64), |mut s, v| {
        let _ = write!(s, "{v:08x}");
        s
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The repository contains no secret-looking literal that the allowlist does not explain, and
/// the allowlist has no stale entry.
#[test]
fn repository_has_no_unexplained_secrets() {
    let root = workspace_root();
    let patterns = patterns();
    let allowlist_text = fs::read_to_string(root.join(ALLOWLIST)).unwrap();
    let entries = parse_allowlist(&allowlist_text, &patterns)
        .unwrap_or_else(|errors| panic!("{ALLOWLIST} is malformed:\n{}", errors.join("\n")));

    let scan = scan_tree(&root, &patterns);
    // Guards against a walker that silently scans nothing (wrong root, over-broad skip).
    assert!(
        scan.files_scanned > 50,
        "only {} files scanned under {}",
        scan.files_scanned,
        root.display()
    );
    assert!(
        scan.findings
            .iter()
            .all(|f| f.path != "authkit-server/tests/secret_scan.rs"),
        "the scanner's own source must not contain a matching literal"
    );

    let (unexplained, stale) = apply_allowlist(&scan.findings, &entries);
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "secret scan of {} ({} files):\n{}",
        root.display(),
        scan.files_scanned,
        report(&unexplained, &stale)
    );
}

/// A small deterministic generator, so planted values vary without literals in this file.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` distinct characters of `alphabet`, shuffled (so entropy is log2(n) bits/char).
    fn distinct(&mut self, alphabet: &str, n: usize) -> String {
        let mut chars: Vec<char> = alphabet.chars().collect();
        assert!(n <= chars.len());
        for i in (1..chars.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            chars.swap(i, j);
        }
        chars[..n].iter().collect()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[3]).collect()
    }
}

const UPPER_DIGITS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Every pattern catches a planted secret; test vectors and placeholders are not flagged; the
/// allowlist suppresses exactly its entry and reports stale ones. All planted values are built
/// at run time from pieces, so this source file never matches.
#[test]
fn scanner_catches_planted_secrets() {
    let patterns = patterns();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().unwrap();
    let dashes = "-".repeat(5);

    let planted: Vec<(&str, String)> = vec![
        (
            "aws-access-key-id",
            format!(
                "aws_id = {}{}{}",
                "AK",
                "IA",
                rng.distinct(UPPER_DIGITS, 16)
            ),
        ),
        (
            "aws-access-key-id",
            format!(
                "sts {}{}{} here",
                "AS",
                "IA",
                rng.distinct(UPPER_DIGITS, 16)
            ),
        ),
        (
            "private-key-block",
            format!("{dashes}BEGIN RSA PRIVATE KEY{dashes}\nMIIE…\n"),
        ),
        (
            "private-key-block",
            format!("{dashes}BEGIN {}{dashes}\n", ["PRIVATE", "KEY"].join(" ")),
        ),
        (
            "github-token",
            format!("gh{}_{}", "p", rng.distinct(ALNUM, 36)),
        ),
        (
            "github-token",
            format!("token gh{}_{}", "o", rng.distinct(ALNUM, 40)),
        ),
        (
            "github-fine-grained-pat",
            format!("github{}pat_{}", "_", rng.distinct(ALNUM, 30)),
        ),
        (
            "slack-token",
            format!(
                "xo{}b-{}-{}",
                "x",
                rng.distinct(ALNUM, 12),
                rng.distinct(ALNUM, 8)
            ),
        ),
        (
            "vault-service-token",
            format!("VAULT_TOKEN=hv{}.{}", "s", rng.distinct(ALNUM, 28)),
        ),
        (
            "stripe-live-key",
            format!("sk{}live_{}", "_", rng.distinct(ALNUM, 24)),
        ),
        (
            "google-api-key",
            format!("key={}{}{};", "AI", "za", rng.distinct(ALNUM, 35)),
        ),
        (
            "authkit-key-ring",
            format!(
                "AUTHKIT_SECRET_SESSION=prod{}{}",
                ":",
                STANDARD.encode(rng.bytes(32))
            ),
        ),
        (
            "authkit-key-ring",
            format!(
                "AUTHKIT_SECRET_PEPPER=k2{}{}",
                ":",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rng.bytes(32))
            ),
        ),
        (
            "authkit-key-ring",
            format!("ring = \"old{}{}\"", ":", STANDARD.encode(rng.bytes(64))),
        ),
        (
            "url-password",
            format!(
                "DATABASE_URL=postgres{}app{}{}@db.internal/app",
                "://",
                ":",
                rng.distinct(ALNUM, 14)
            ),
        ),
        (
            "secret-assignment",
            format!("let api_key = \"{}\";", rng.distinct(ALNUM, 32)),
        ),
        (
            "secret-assignment",
            format!("\"client_secret\": \"{}\"", rng.distinct(ALNUM, 24)),
        ),
    ];
    let every_pattern: BTreeSet<&str> = patterns.iter().map(|p| p.name).collect();
    let covered: BTreeSet<&str> = planted.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        covered, every_pattern,
        "every pattern needs a planted secret"
    );

    for (i, (_, text)) in planted.iter().enumerate() {
        fs::write(dir.path().join(format!("leak{i:02}.txt")), text).unwrap();
    }

    // Look-alikes that must NOT be flagged.
    let all_same_ring = format!("k1{}{}", ":", STANDARD.encode([1u8; 32]));
    let zero_ring = format!(
        "KeyRing::parse(\"k0{}{}\")",
        ":",
        STANDARD.encode([0u8; 32])
    );
    let placeholder_urls = [
        format!("postgres{}app{}s3cret@db", "://", ":"),
        format!("smtps{}user{}p%40ss@host", "://", ":"),
        format!("redis{}u{}${{REDIS_PASSWORD}}@cache", "://", ":"),
        format!("postgres{}app{}pw-2@db", "://", ":"),
        format!("postgres{}{{user}}{}{{password}}@{{host}}", "://", ":"),
    ];
    let low_entropy = format!("password = \"{}\"", "correct horse battery staple");
    let clean = [
        all_same_ring,
        zero_ring,
        placeholder_urls.join("\n"),
        low_entropy,
        // A hex digest and a too-short key are not ring keys.
        format!("sha256{}{}", ":", "0123456789abcdef".repeat(4)),
        format!("k1{}{}", ":", STANDARD.encode(rng.bytes(31))),
        // A host:port is not userinfo.
        format!("https{}example.com{}8443/path@v1", "://", ":"),
    ]
    .join("\n");
    fs::write(dir.path().join("clean.txt"), &clean).unwrap();
    // A token that both a specific pattern and the keyword pattern match is reported once.
    let both = format!(
        "{{\"access_token\":\"gh{}_{}\"}}",
        "o",
        rng.distinct(ALNUM, 36)
    );
    fs::write(dir.path().join("once.json"), &both).unwrap();

    let scan = scan_tree(dir.path(), &patterns);
    assert_eq!(scan.files_scanned, planted.len() + 2);
    let once: Vec<&str> = scan
        .findings
        .iter()
        .filter(|f| f.path == "once.json")
        .map(|f| f.pattern)
        .collect();
    assert_eq!(once, ["github-token"]);
    for (i, (name, _)) in planted.iter().enumerate() {
        let path = format!("leak{i:02}.txt");
        let hits: Vec<&Finding> = scan.findings.iter().filter(|f| f.path == path).collect();
        assert!(
            hits.iter().any(|f| f.pattern == *name),
            "{path}: planted {name} not caught; findings: {:?}",
            hits.iter()
                .map(|f| (f.pattern, f.preview()))
                .collect::<Vec<_>>()
        );
    }
    let in_clean: Vec<_> = scan
        .findings
        .iter()
        .filter(|f| f.path == "clean.txt")
        .map(|f| (f.line, f.pattern, f.preview()))
        .collect();
    assert!(in_clean.is_empty(), "false positives: {in_clean:?}");

    // The report names path:line and pattern, and never prints a whole secret.
    let all: Vec<&Finding> = scan.findings.iter().collect();
    let msg = report(&all, &[]);
    for f in &scan.findings {
        assert!(msg.contains(&format!("{}:{} {}", f.path, f.line, f.pattern)));
        assert!(!msg.contains(&f.matched), "report leaks {}", f.preview());
    }

    // Allowlisting: an entry hides exactly its finding; an entry for nothing is stale.
    let target = scan
        .findings
        .iter()
        .find(|f| f.pattern == "github-token")
        .unwrap();
    let allowlist = format!(
        "# comment\n\n{}\t{}\t{}\tdocumented example\nnowhere.txt\tgithub-token\t{}\tgone\n",
        target.path,
        target.pattern,
        target.hash_prefix(),
        "0".repeat(HASH_PREFIX_LEN)
    );
    let entries = parse_allowlist(&allowlist, &patterns).unwrap();
    let (unexplained, stale) = apply_allowlist(&scan.findings, &entries);
    assert_eq!(unexplained.len(), scan.findings.len() - 1);
    assert!(!unexplained.contains(&target));
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].path, "nowhere.txt");

    // Malformed entries are rejected rather than ignored.
    let bad = "a.txt\tgithub-token\tabc\n\
               a.txt\tno-such-pattern\t0123456789abcdef\tr\n\
               a.txt\tgithub-token\t0123456789abcdef\t \n\
               a.txt github-token\n";
    assert_eq!(parse_allowlist(bad, &patterns).unwrap_err().len(), 4);
}

/// The walker skips build output, dependencies, VCS data, fuzz corpora, lock files, binary and
/// oversized files, and does not follow symlinks.
#[test]
fn walker_skips_generated_and_binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let put = |rel: &str, content: &[u8]| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    };
    let leak = format!("gh{}_{}", "p", "Ab1".repeat(12));
    put("src/lib.rs", b"fn main() {}\n");
    put("docs/notes.md", leak.as_bytes());
    for skipped in [
        "target/debug/out.txt",
        "examples/app/target/x.txt",
        "node_modules/pkg/index.js",
        "tests/oidc-provider/node_modules/pkg/index.js",
        ".git/config",
        ".authkit/state.txt",
        "fuzz/corpus/json/seed",
        "fuzz/target/x.txt",
        "fuzz/artifacts/crash-1",
        "Cargo.lock",
        "tests/oidc-provider/package-lock.json",
    ] {
        put(skipped, leak.as_bytes());
    }
    // Not skipped: only the exact `fuzz/corpus` path is, and `targets` is not `target`.
    put("docs/corpus/x.txt", b"plain\n");
    put("targets/x.txt", b"plain\n");
    // Binary (NUL early) and oversized files are listed but not scanned.
    let mut binary = vec![0u8, 1, 2];
    binary.extend_from_slice(leak.as_bytes());
    put("assets/logo.bin", &binary);
    let mut big = leak.clone().into_bytes();
    big.resize(usize::try_from(MAX_FILE_SIZE).unwrap() + 1, b' ');
    put("assets/big.txt", &big);
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("target"), root.join("link-to-target")).unwrap();

    let walked: Vec<String> = walk(root).iter().map(|p| slash_path(p)).collect();
    assert_eq!(
        walked,
        [
            "assets/big.txt",
            "assets/logo.bin",
            "docs/corpus/x.txt",
            "docs/notes.md",
            "src/lib.rs",
            "targets/x.txt",
        ]
    );

    let scan = scan_tree(root, &patterns());
    assert_eq!(
        scan.files_scanned, 4,
        "binary and oversized files are not scanned"
    );
    let hits: Vec<(&str, &str)> = scan
        .findings
        .iter()
        .map(|f| (f.path.as_str(), f.pattern))
        .collect();
    assert_eq!(hits, [("docs/notes.md", "github-token")]);
}

/// The SHA-256 used for allowlist hashes matches the FIPS 180-2 test vectors.
#[test]
fn sha256_matches_known_vectors() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    // Crosses a block boundary inside the padding.
    assert_eq!(
        sha256_hex(&[b'a'; 1_000]),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
}
