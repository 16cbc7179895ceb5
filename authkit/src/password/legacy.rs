//! Password hashes imported from other systems: bcrypt, PBKDF2-SHA256 (PHC and passlib forms)
//! and Django's `pbkdf2_sha256`.
//!
//! They are only ever *verified*: a successful login answers `needs_rehash`, and the login code
//! replaces the stored hash with argon2id. Every parser bounds the work a stored string can ask
//! for, so that a corrupt or hostile row cannot pin a hashing thread for minutes.
//!
//! **bcrypt reads at most 72 bytes of a password.** A password longer than that never matches a
//! bcrypt hash here: otherwise any password sharing its first 72 bytes with the real one would
//! be accepted (Okta, October 2024; SECURITY.md real-world bug 9). Users whose original password
//! was longer than 72 bytes therefore cannot sign in with it and must reset their password.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use pbkdf2::sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::phc::Argon2Phc;

/// bcrypt reads at most this many bytes of a password; longer passwords never match.
pub const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;
/// Highest bcrypt cost accepted from a stored hash (2^13 rounds, about half a second). Every
/// check of such a hash costs that CPU on a bounded hashing thread, so the cap limits how much
/// an attacker's guesses against imported accounts can amplify (argon2id here: ~20 ms).
pub const MAX_BCRYPT_COST: u32 = 13;
/// Lowest bcrypt cost that exists (the format's own floor).
const MIN_BCRYPT_COST: u32 = 4;
/// Most PBKDF2-SHA256 work accepted from a stored hash: iterations × 32-byte output blocks.
/// Django 5.2's default (1 000 000 iterations) fits; about a quarter of a second of CPU.
pub const MAX_PBKDF2_WORK: u64 = 1_200_000;
/// Longest stored string considered at all: every supported form is far shorter.
const MAX_STORED_LEN: usize = 512;
/// Salt length bounds (bytes) for PBKDF2 hashes.
const PBKDF2_SALT_LEN: std::ops::RangeInclusive<usize> = 1..=128;
/// Derived-key length bounds (bytes) for the PHC form, which states its length.
const PBKDF2_PHC_HASH_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// passlib and Django always store a SHA-256-sized key.
const PBKDF2_FIXED_HASH_LEN: usize = 32;
const SHA256_LEN: usize = 32;
const BCRYPT_SALT_LEN: usize = 16;
/// bcrypt stores 23 of its 24 output bytes.
const BCRYPT_HASH_LEN: usize = 23;

/// bcrypt's base64 (`./A-Za-z0-9`, no padding). The salt's 22 characters carry 4 bits more than
/// its 16 bytes; crypt(3) implementations ignore them, and so do we (salts written by hand or by
/// old code are not always canonical).
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Which scheme a stored password hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashKind {
    /// Our own: `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
    Argon2id,
    /// bcrypt, `$2a$`, `$2b$` or `$2y$` (verified; rehashed at the next login).
    Bcrypt,
    /// PBKDF2-HMAC-SHA256 in PHC form (`$pbkdf2-sha256$i=…,l=…$salt$hash`, as written by
    /// RustCrypto) or passlib's form (`$pbkdf2-sha256$iterations$salt$hash`).
    Pbkdf2Sha256,
    /// Django's `pbkdf2_sha256$iterations$salt$hash`.
    DjangoPbkdf2Sha256,
}

impl HashKind {
    /// The scheme of `stored`, or `None` when it is not a supported, well-formed hash within
    /// the work limits (such a hash can never match: the account behaves as having no
    /// password). Never panics, whatever the input.
    pub fn identify(stored: &str) -> Option<Self> {
        if Argon2Phc::parse(stored).is_some() {
            return Some(Self::Argon2id);
        }
        LegacyHash::parse(stored).map(|h| h.kind())
    }

    /// A stable name: `argon2id`, `bcrypt`, `pbkdf2-sha256`, `django-pbkdf2-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Argon2id => "argon2id",
            Self::Bcrypt => "bcrypt",
            Self::Pbkdf2Sha256 => "pbkdf2-sha256",
            Self::DjangoPbkdf2Sha256 => "django-pbkdf2-sha256",
        }
    }

    /// Whether a matching login replaces the hash with argon2id whatever its parameters.
    pub fn is_legacy(self) -> bool {
        self != Self::Argon2id
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed legacy hash, ready to verify.
#[derive(PartialEq, Eq)]
pub(crate) enum LegacyHash {
    Bcrypt {
        cost: u32,
        salt: [u8; BCRYPT_SALT_LEN],
        hash: [u8; BCRYPT_HASH_LEN],
    },
    Pbkdf2Sha256 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
        django: bool,
    },
}

/// Only the scheme and its cost: salts and hashes stay out of logs.
impl fmt::Debug for LegacyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bcrypt { cost, .. } => f
                .debug_struct("Bcrypt")
                .field("cost", cost)
                .finish_non_exhaustive(),
            Self::Pbkdf2Sha256 {
                iterations, django, ..
            } => f
                .debug_struct("Pbkdf2Sha256")
                .field("iterations", iterations)
                .field("django", django)
                .finish_non_exhaustive(),
        }
    }
}

impl LegacyHash {
    /// Parses any supported legacy form; `None` for anything malformed or over the limits.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        if s.len() > MAX_STORED_LEN || !s.is_ascii() {
            return None;
        }
        if s.starts_with("$2") {
            parse_bcrypt(s)
        } else if let Some(rest) = s.strip_prefix("$pbkdf2-sha256$") {
            parse_pbkdf2(rest)
        } else if let Some(rest) = s.strip_prefix("pbkdf2_sha256$") {
            parse_django(rest)
        } else {
            None
        }
    }

    pub(crate) fn kind(&self) -> HashKind {
        match self {
            Self::Bcrypt { .. } => HashKind::Bcrypt,
            Self::Pbkdf2Sha256 { django: false, .. } => HashKind::Pbkdf2Sha256,
            Self::Pbkdf2Sha256 { django: true, .. } => HashKind::DjangoPbkdf2Sha256,
        }
    }

    /// Whether `password` matches. CPU-bound (up to the limits above): call it on a hashing
    /// thread, never on the async executor.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Bcrypt { cost, salt, hash } => bcrypt_matches(*cost, salt, hash, password),
            Self::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
                ..
            } => {
                let mut out = Zeroizing::new(vec![0u8; hash.len()]);
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, *iterations, &mut out);
                bool::from(out.as_slice().ct_eq(hash))
            }
        }
    }
}

/// `$2a$`, `$2b$` or `$2y$`, two-digit cost, 22 characters of salt, 31 of hash. `$2x$` (the
/// buggy crypt_blowfish variant) and `$2$` are refused. `$2a$` hashes of non-ASCII passwords
/// made by crypt_blowfish before 1.1 (2011) do not verify and need a reset.
fn parse_bcrypt(s: &str) -> Option<LegacyHash> {
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|prefix| s.strip_prefix(prefix))?;
    let (cost, rest) = rest.split_once('$')?;
    if cost.len() != 2 {
        return None;
    }
    let cost = parse_decimal(cost)?;
    if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
        return None;
    }
    let (salt, hash) = rest.split_at_checked(22)?;
    if hash.len() != 31 {
        return None;
    }
    Some(LegacyHash::Bcrypt {
        cost,
        salt: BCRYPT_B64.decode(salt).ok()?.try_into().ok()?,
        hash: BCRYPT_B64.decode(hash).ok()?.try_into().ok()?,
    })
}

fn bcrypt_matches(
    cost: u32,
    salt: &[u8; BCRYPT_SALT_LEN],
    expected: &[u8; BCRYPT_HASH_LEN],
    password: &[u8],
) -> bool {
    // bcrypt's key is the password and a terminating NUL, cut at 72 bytes. Refused, though
    // the work is still done so that the answer takes the same time:
    // - more than 72 bytes: the tail would be ignored (real-world bug 9);
    // - a NUL inside: the key schedule cycles the key, so "a" and "a\0a" give the same hash,
    //   and C implementations stop at the first NUL.
    let usable = password.len() <= BCRYPT_MAX_PASSWORD_BYTES && !password.contains(&0);
    let mut key = Zeroizing::new([0u8; BCRYPT_MAX_PASSWORD_BYTES]);
    for (k, p) in key.iter_mut().zip(password) {
        *k = *p;
    }
    let used = (password.len() + 1).min(BCRYPT_MAX_PASSWORD_BYTES);
    let Some(key) = key.get(..used) else {
        return false;
    };
    let out = Zeroizing::new(bcrypt::bcrypt(cost, *salt, key));
    let same = out
        .get(..BCRYPT_HASH_LEN)
        .is_some_and(|out| bool::from(out.ct_eq(expected)));
    same && usable
}

/// After `$pbkdf2-sha256$`: the PHC form `i=…[,l=…]$salt$hash` (standard base64 without
/// padding) or passlib's `iterations$salt$hash` (its "ab64": `.` instead of `+`).
fn parse_pbkdf2(rest: &str) -> Option<LegacyHash> {
    let [params, salt, hash] = split3(rest)?;
    let (iterations, salt, hash) = if params.contains('=') {
        let (mut i, mut l) = (None, None);
        for kv in params.split(',') {
            let (k, v) = kv.split_once('=')?;
            let slot = match k {
                "i" => &mut i,
                "l" => &mut l,
                _ => return None,
            };
            if slot.replace(parse_decimal(v)?).is_some() {
                return None;
            }
        }
        let salt = STANDARD_NO_PAD.decode(salt).ok()?;
        let hash = STANDARD_NO_PAD.decode(hash).ok()?;
        let len = usize::try_from(l.unwrap_or(32)).ok()?;
        if hash.len() != len || !PBKDF2_PHC_HASH_LEN.contains(&len) {
            return None;
        }
        (i?, salt, hash)
    } else {
        let ab64 = |s: &str| STANDARD_NO_PAD.decode(s.replace('.', "+")).ok();
        if salt.contains('+') || hash.contains('+') {
            return None;
        }
        let hash = ab64(hash)?;
        if hash.len() != PBKDF2_FIXED_HASH_LEN {
            return None;
        }
        (parse_decimal(params)?, ab64(salt)?, hash)
    };
    pbkdf2_hash(iterations, salt, hash, false)
}

/// After `pbkdf2_sha256$`: `iterations$salt$hash`, the salt used as its literal text and the
/// hash in padded standard base64.
fn parse_django(rest: &str) -> Option<LegacyHash> {
    let [iterations, salt, hash] = split3(rest)?;
    if salt.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let hash = STANDARD.decode(hash).ok()?;
    if hash.len() != PBKDF2_FIXED_HASH_LEN {
        return None;
    }
    pbkdf2_hash(
        parse_decimal(iterations)?,
        salt.as_bytes().to_vec(),
        hash,
        true,
    )
}

fn pbkdf2_hash(iterations: u32, salt: Vec<u8>, hash: Vec<u8>, django: bool) -> Option<LegacyHash> {
    let blocks = u64::try_from(hash.len().div_ceil(SHA256_LEN)).ok()?;
    let work = u64::from(iterations).checked_mul(blocks)?;
    if iterations == 0 || work > MAX_PBKDF2_WORK || !PBKDF2_SALT_LEN.contains(&salt.len()) {
        return None;
    }
    Some(LegacyHash::Pbkdf2Sha256 {
        iterations,
        salt,
        hash,
        django,
    })
}

/// Exactly three `$`-separated fields.
fn split3(s: &str) -> Option<[&str; 3]> {
    let mut parts = s.split('$');
    let fields = [parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(fields)
}

/// ASCII digits only (`u32::from_str` would also take a leading `+`), at most 10 of them.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn verify(stored: &str, password: &str) -> bool {
        LegacyHash::parse(stored)
            .unwrap_or_else(|| panic!("does not parse: {stored}"))
            .verify(password.as_bytes())
    }

    // Published vectors: jBCrypt's TestBCrypt.java and OpenBSD's "U*U".
    const BCRYPT_PUBLISHED: [(&str, &str); 4] = [
        (
            "",
            "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s.",
        ),
        (
            "a",
            "$2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe",
        ),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "$2a$08$aTsUwsyowQuzRrDqFflhgekJ8d9/7Z3GV3UcgvzQW3J5zMyrTvlz.",
        ),
        (
            "U*U",
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        ),
    ];

    /// Made with Python's `bcrypt` 5.0 (`hashpw(p, gensalt(5))`).
    const BCRYPT_2B: &str = "$2b$05$P9UdwfeZwAmSwLFXtORG7O/QGRHg0yAgzwSY/18kDBctcvXweqti6";
    /// `hashpw("pässwörd ✓".encode(), gensalt(4))`.
    const BCRYPT_UTF8: &str = "$2b$04$egW4SZT3tPHWdKb9hZDcJuhxteoQdI2zo4/PPXy8FduPiCHS2sluC";
    /// The hash of the 72-byte `SEVENTY_TWO` (Python `bcrypt`, cost 4).
    const BCRYPT_72: &str = "$2b$04$kAzmbw5q3KgCuVUJjHtl/.FSWEpFFyY3EBlp5HOzgWy7TwrhpuwhK";

    fn seventy_two() -> String {
        "0123456789".repeat(8).chars().take(72).collect()
    }

    #[test]
    fn bcrypt_published_vectors() {
        for (password, stored) in BCRYPT_PUBLISHED {
            assert_eq!(HashKind::identify(stored), Some(HashKind::Bcrypt));
            assert!(verify(stored, password), "{stored}");
            assert!(!verify(stored, &format!("{password}x")), "{stored}");
        }
    }

    #[test]
    fn bcrypt_2b_2y_and_utf8() {
        assert!(verify(BCRYPT_2B, "correct horse battery staple"));
        assert!(!verify(BCRYPT_2B, "correct horse battery stapler"));
        assert!(!verify(BCRYPT_2B, "Correct horse battery staple"));
        // PHP's $2y$ is the same algorithm.
        let y = BCRYPT_2B.replacen("$2b$", "$2y$", 1);
        assert!(verify(&y, "correct horse battery staple"));
        assert!(verify(BCRYPT_UTF8, "pässwörd ✓"));
        assert!(!verify(BCRYPT_UTF8, "passwörd ✓"));
        // The buggy crypt_blowfish variant is not accepted.
        let x = BCRYPT_2B.replacen("$2b$", "$2x$", 1);
        assert_eq!(LegacyHash::parse(&x), None);
    }

    // SECURITY.md #16 and real-world bug 9 (Okta, 2024): bcrypt ignores everything after 72
    // bytes, so a longer password must never match.
    #[test]
    fn bcrypt_never_matches_past_72_bytes() {
        let stored = seventy_two();
        assert_eq!(stored.len(), 72);
        assert!(verify(BCRYPT_72, &stored), "exactly 72 bytes is usable");
        // 80 bytes whose first 72 are the stored password: bcrypt alone would say yes.
        let eighty = format!("{stored}ABCDEFGH");
        assert_eq!(eighty.len(), 80);
        assert!(!verify(BCRYPT_72, &eighty));
        // Two passwords differing only at character 73. A truncating system that hashed
        // either stored exactly BCRYPT_72; neither may get in (such users must reset).
        assert!(!verify(BCRYPT_72, &format!("{stored}X")));
        assert!(!verify(BCRYPT_72, &format!("{stored}Y")));
        // One byte short is a different password.
        let seventy_one: String = stored.chars().take(71).collect();
        assert!(!verify(BCRYPT_72, &seventy_one));
    }

    #[test]
    fn bcrypt_refuses_passwords_with_nul() {
        // "a" + NUL + "a" cycles to the same key schedule as "a" in bcrypt.
        let a = BCRYPT_PUBLISHED[1].1;
        assert!(verify(a, "a"));
        assert!(!verify(a, "a\0a"));
        assert!(!verify(a, "a\0"));
    }

    #[test]
    fn bcrypt_costs_outside_the_limits_are_refused() {
        let tail = "P9UdwfeZwAmSwLFXtORG7O/QGRHg0yAgzwSY/18kDBctcvXweqti6";
        for cost in ["03", "14", "17", "20", "31", "99", "5", "005", "+5", "-5"] {
            let stored = format!("$2b${cost}${tail}");
            assert_eq!(LegacyHash::parse(&stored), None, "{stored}");
            assert_eq!(HashKind::identify(&stored), None, "{stored}");
        }
        assert!(LegacyHash::parse(&format!("$2b$13${tail}")).is_some());
        assert!(LegacyHash::parse(&format!("$2b$04${tail}")).is_some());
    }

    /// RFC 7914 §11: PBKDF2-HMAC-SHA256, P = "passwd", S = "salt", c = 1, dkLen = 64.
    const PHC_RFC7914: &str = "$pbkdf2-sha256$i=1,l=64$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLxJypzM8Xm2RZkWZLOdd+8xfHG4RbHjC9UJESBB06GXgw";
    /// RustCrypto `pbkdf2`'s own PHC test vector (dkLen = 40), checked with Python's hashlib.
    const PHC_RUSTCRYPTO: &str = "$pbkdf2-sha256$i=4096,l=40$c2FsdFNBTFRzYWx0U0FMVHNhbHRTQUxUc2FsdFNBTFRzYWx0$NIyJ28vTKy8y2BS4EW6EzysXNH68GAAYHE4qH7jdU+HGNVGMfaxH6Q";
    /// Without `l` (default 32): hashlib.pbkdf2_hmac over salt bytes 0..16, 1000 iterations.
    const PHC_DEFAULT_LEN: &str =
        "$pbkdf2-sha256$i=1000$AAECAwQFBgcICQoLDA0ODw$ppsXnjrdPB4KryJ6DrOqKqhkWrhv7PbKAMF1Eml8cZ4";
    /// passlib 1.7.4 `pbkdf2_sha256.using(rounds=1000, salt=…)`; the salt has `.` (ab64 `+`).
    const PASSLIB: &str =
        "$pbkdf2-sha256$1000$........AAECA//./fz7.g$dX.mkoD35COC6upthSuL/tvKYvpRGZ7V285165i1Rfo";
    /// Django 5.2 `PBKDF2PasswordHasher().encode("lètmein", "seasalt", iterations=1000)`.
    const DJANGO: &str = "pbkdf2_sha256$1000$seasalt$JgZryXe2Ga8ysg6XbzkLpTdyPQrHqsinbL9BnnhgX4A=";

    #[test]
    fn pbkdf2_vectors() {
        for (stored, password, kind) in [
            (PHC_RFC7914, "passwd", HashKind::Pbkdf2Sha256),
            (
                PHC_RUSTCRYPTO,
                "passwordPASSWORDpassword",
                HashKind::Pbkdf2Sha256,
            ),
            (
                PHC_DEFAULT_LEN,
                "correct horse battery staple",
                HashKind::Pbkdf2Sha256,
            ),
            (
                PASSLIB,
                "correct horse battery staple",
                HashKind::Pbkdf2Sha256,
            ),
            (DJANGO, "lètmein", HashKind::DjangoPbkdf2Sha256),
        ] {
            assert_eq!(HashKind::identify(stored), Some(kind), "{stored}");
            assert!(verify(stored, password), "{stored}");
            assert!(!verify(stored, &format!("{password}!")), "{stored}");
            assert!(!verify(stored, ""), "{stored}");
        }
    }

    #[test]
    fn pbkdf2_limits_and_malformed_fields_are_refused() {
        let salt = "c2FsdA";
        let h32 = STANDARD_NO_PAD.encode([7u8; 32]);
        let h64 = STANDARD_NO_PAD.encode([7u8; 64]);
        let ok = format!("$pbkdf2-sha256$i=1200000${salt}${h32}");
        assert!(LegacyHash::parse(&ok).is_some());
        for bad in [
            format!("$pbkdf2-sha256$i=1200001${salt}${h32}"),
            // 64 bytes are two blocks: twice the work.
            format!("$pbkdf2-sha256$i=600001,l=64${salt}${h64}"),
            format!("$pbkdf2-sha256$i=0${salt}${h32}"),
            format!("$pbkdf2-sha256$i=+100${salt}${h32}"),
            format!("$pbkdf2-sha256$i=4294967296${salt}${h32}"),
            format!("$pbkdf2-sha256$i=1000,l=31${salt}${h32}"),
            format!(
                "$pbkdf2-sha256$i=1000,l=65${salt}${}",
                STANDARD_NO_PAD.encode([7u8; 65])
            ),
            format!("$pbkdf2-sha256$i=1000,i=1000${salt}${h32}"),
            format!("$pbkdf2-sha256$i=1000,x=1${salt}${h32}"),
            format!("$pbkdf2-sha256$l=32${salt}${h32}"),
            format!("$pbkdf2-sha256$i=1000$${h32}"),
            format!("$pbkdf2-sha256$i=1000${salt}=${h32}"),
            format!("$pbkdf2-sha256$i=1000${salt}${h32}$"),
            format!("$pbkdf2-sha256$i=1000${salt}"),
            format!("$pbkdf2-sha256$1200001${salt}${h32}"),
            format!("$pbkdf2-sha256$1000${salt}${h64}"),
            format!(
                "pbkdf2_sha256$1200001$seasalt${}",
                STANDARD.encode([7u8; 32])
            ),
            format!("pbkdf2_sha256$0$seasalt${}", STANDARD.encode([7u8; 32])),
            format!("pbkdf2_sha256$1000$$${}", STANDARD.encode([7u8; 32])),
            format!("pbkdf2_sha256$1000$salt${}", STANDARD.encode([7u8; 31])),
            format!("pbkdf2_sha256$1000$sa\tlt${}", STANDARD.encode([7u8; 32])),
            format!("pbkdf2_sha256$1000$salt${h32}"),
            "pbkdf2_sha1$1000$salt$AAAA".to_owned(),
        ] {
            assert_eq!(LegacyHash::parse(&bad), None, "{bad}");
            assert_eq!(HashKind::identify(&bad), None, "{bad}");
        }
    }

    #[test]
    fn identifies_argon2id_and_nothing_else() {
        let argon = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert_eq!(HashKind::identify(argon), Some(HashKind::Argon2id));
        for other in [
            "",
            "not a hash",
            "!",
            "$1$saltsalt$hash",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
            "bcrypt$$2b$05$P9UdwfeZwAmSwLFXtORG7O/QGRHg0yAgzwSY/18kDBctcvXweqti6",
        ] {
            assert_eq!(HashKind::identify(other), None, "{other}");
        }
        assert!(!HashKind::Argon2id.is_legacy());
        assert!(HashKind::Bcrypt.is_legacy());
        assert_eq!(
            HashKind::DjangoPbkdf2Sha256.to_string(),
            "django-pbkdf2-sha256"
        );
    }

    #[test]
    fn debug_shows_no_salt_or_hash() {
        let parsed = LegacyHash::parse(DJANGO).unwrap();
        let shown = format!("{parsed:?}");
        assert!(shown.contains("1000"), "{shown}");
        assert!(
            !shown.contains("seasalt") && !shown.contains("115"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = HashKind::identify(&s);
        }

        #[test]
        fn near_misses_never_panic(
            s in "(\\$2[abxy]\\$[0-9]{1,3}\\$|\\$pbkdf2-sha256\\$(i=[0-9]{1,11},?(l=[0-9]{1,3})?)?\\$?|pbkdf2_sha256\\$[0-9]{0,9}\\$)[A-Za-z0-9./+=$,é]{0,90}"
        ) {
            // Parse only: a random string that happens to parse could ask for seconds of work.
            let _ = HashKind::identify(&s);
        }
    }
}
