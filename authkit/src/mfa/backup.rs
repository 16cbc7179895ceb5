//! Backup codes (NIST's look-up secrets): 120 random bits each, stored as a peppered HMAC.

use std::fmt;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use super::MfaError;
use super::totp::CodeError;
use crate::rng::RandomSource;
use crate::secret::{KeyId, KeyRing};
use crate::user::UserId;
use crate::util::Swappable;

/// Backup codes issued at a time.
pub const BACKUP_CODE_COUNT: usize = 10;

/// Random bytes per code: 120 bits (SECURITY.md #26 asks for ≥112 to store a plain keyed hash).
const CODE_BYTES: usize = 15;
/// Base32 symbols per code (5 bits each).
const CODE_SYMBOLS: usize = 24;
/// Symbols per displayed group.
const GROUP: usize = 4;
/// Length of the display form: 6 groups of 4 joined by 5 hyphens.
const DISPLAY_LEN: usize = CODE_SYMBOLS + CODE_SYMBOLS / GROUP - 1;
/// Longest raw input [`BackupCode::parse`] looks at, in bytes.
const MAX_INPUT_LEN: usize = 64;
/// Crockford's base32 alphabet, lower case: no i, l, o (confusable with 1 and 0) or u.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Label of the HMAC that derives the backup-code key from a pepper ring key.
const KDF_LABEL: &[u8] = b"authkit/mfa/backup-code/v1/hmac-sha256";
/// Domain label hashed in front of every code.
const DOMAIN: &[u8] = b"authkit backup code v1";

/// One backup code: 24 Crockford base32 symbols (120 bits) shown as six groups of four,
/// `xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`. `Debug` prints `BackupCode([REDACTED])`; wiped on drop;
/// equality is constant time.
pub struct BackupCode(Zeroizing<String>);

impl BackupCode {
    /// A new code with 120 bits from `rng`.
    pub fn generate(rng: &dyn RandomSource) -> Result<Self, MfaError> {
        let mut bytes = Zeroizing::new([0u8; CODE_BYTES]);
        rng.try_fill(bytes.as_mut_slice())
            .map_err(|_| MfaError::Random)?;
        let mut acc = Zeroizing::new(0u128);
        for &b in bytes.iter() {
            *acc = (*acc << 8) | u128::from(b);
        }
        let mut symbols = Zeroizing::new([0u8; CODE_SYMBOLS]);
        for (i, slot) in symbols.iter_mut().enumerate() {
            let shift = 5 * (CODE_SYMBOLS - 1 - i);
            let index = usize::try_from((*acc >> shift) & 31).unwrap_or(0);
            *slot = ALPHABET.get(index).copied().unwrap_or(b'0');
        }
        Ok(Self(display_form(symbols.as_slice())))
    }

    /// The display form, with hyphens.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Normalises a code as typed: input longer than 64 bytes is refused first
    /// ([`CodeError::TooLong`]); spaces and `-` are dropped; letters are lower-cased and the
    /// Crockford confusables folded (`i`, `l` → `1`, `o` → `0`); any other character
    /// (including `u` and non-ASCII) is [`CodeError::Malformed`]; exactly 24 symbols are
    /// required ([`CodeError::WrongLength`]).
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(CodeError::TooLong);
        }
        let mut symbols = Zeroizing::new([0u8; CODE_SYMBOLS]);
        let mut count = 0usize;
        for b in input.bytes() {
            let symbol = match b.to_ascii_lowercase() {
                b' ' | b'-' => continue,
                b'i' | b'l' => b'1',
                b'o' => b'0',
                c if ALPHABET.contains(&c) => c,
                _ => return Err(CodeError::Malformed),
            };
            if let Some(slot) = symbols.get_mut(count) {
                *slot = symbol;
            }
            count += 1;
        }
        if count != CODE_SYMBOLS {
            return Err(CodeError::WrongLength);
        }
        Ok(Self(display_form(symbols.as_slice())))
    }

    /// The 24 symbols without hyphens: what is hashed.
    fn symbols(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.bytes().filter(|&b| b != b'-').collect())
    }
}

fn display_form(symbols: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(DISPLAY_LEN));
    for (i, group) in symbols.chunks(GROUP).enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode([REDACTED])")
    }
}

impl PartialEq for BackupCode {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for BackupCode {}

/// [`BACKUP_CODE_COUNT`] distinct new codes.
pub fn generate_backup_codes(rng: &dyn RandomSource) -> Result<Vec<BackupCode>, MfaError> {
    let mut codes: Vec<BackupCode> = Vec::with_capacity(BACKUP_CODE_COUNT);
    // A repeat among 120-bit codes means a broken generator; give up rather than loop.
    for _ in 0..BACKUP_CODE_COUNT * 2 {
        if codes.len() == BACKUP_CODE_COUNT {
            break;
        }
        let code = BackupCode::generate(rng)?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    if codes.len() == BACKUP_CODE_COUNT {
        Ok(codes)
    } else {
        Err(MfaError::Random)
    }
}

/// Peppered hash of backup codes: HMAC-SHA256 under a key derived (HMAC-SHA256 with a fixed
/// label) from each pepper ring key, over a domain label, the user id and the 24 symbols,
/// each length-prefixed. Binding the user id means a hash copied to another account does not
/// verify; the pepper means a leaked table cannot be brute-forced offline (and 120-bit codes
/// could not be anyway).
///
/// Cloning shares the derived keys; `Debug` shows key ids only.
#[derive(Clone)]
pub struct BackupCodeHasher {
    keys: Swappable<HasherKeys>,
}

struct HasherKeys {
    /// The derived key of the ring's newest key: new hashes use it.
    newest: (KeyId, Zeroizing<[u8; 32]>),
    /// The others, in the ring's order.
    older: Vec<(KeyId, Zeroizing<[u8; 32]>)>,
}

impl HasherKeys {
    fn derive(pepper: &KeyRing) -> Self {
        let (newest_id, newest_key) = pepper.current();
        let older = pepper
            .ids()
            .filter(|id| *id != newest_id)
            .filter_map(|id| {
                let key = pepper.get(id.as_str())?;
                Some((id.clone(), derive_key(key.expose())))
            })
            .collect();
        Self {
            newest: (newest_id.clone(), derive_key(newest_key.expose())),
            older,
        }
    }

    fn all(&self) -> impl Iterator<Item = &(KeyId, Zeroizing<[u8; 32]>)> {
        std::iter::once(&self.newest).chain(self.older.iter())
    }
}

impl BackupCodeHasher {
    /// A hasher over the pepper key ring (normally `SecretKeys::pepper`).
    pub fn new(pepper: &KeyRing) -> Self {
        Self {
            keys: Swappable::new(HasherKeys::derive(pepper)),
        }
    }

    /// Hashes new codes under `pepper`'s newest key from now on (every clone); codes hashed
    /// under a key no longer in `pepper` stop verifying.
    pub fn set_keys(&self, pepper: &KeyRing) {
        self.keys.store(HasherKeys::derive(pepper));
    }

    /// The hash to store, under the newest key, with that key's id.
    pub fn hash(&self, user: &UserId, code: &BackupCode) -> (KeyId, [u8; 32]) {
        let keys = self.keys.load();
        let (id, key) = &keys.newest;
        (id.clone(), mac(key, user, &code.symbols()))
    }

    /// The hashes `code` may be stored under: one per ring key, newest first, so that codes
    /// hashed before a pepper rotation still verify until the old key is retired.
    pub fn candidates(&self, user: &UserId, code: &BackupCode) -> Vec<[u8; 32]> {
        let symbols = code.symbols();
        self.keys
            .load()
            .all()
            .map(|(_, key)| mac(key, user, &symbols))
            .collect()
    }
}

impl fmt::Debug for BackupCodeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupCodeHasher")
            .field(
                "key_ids",
                &self.keys.load().all().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn derive_key(ring_key: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC takes keys of any length, so this cannot fail.
    if let Ok(mut mac) = <Hmac<Sha256> as hmac::Mac>::new_from_slice(ring_key) {
        mac.update(KDF_LABEL);
        let mut digest = mac.finalize().into_bytes();
        out.copy_from_slice(&digest);
        digest.as_mut_slice().zeroize();
    }
    out
}

fn mac(key: &[u8; 32], user: &UserId, symbols: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key) {
        for field in [DOMAIN, user.as_str().as_bytes(), symbols] {
            mac.update(&u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
            mac.update(field);
        }
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{OsRandom, SeededRandom};
    use proptest::prelude::*;

    fn ring(keys: &[(&str, u8)]) -> KeyRing {
        crate::secret::test_ring(keys)
    }

    #[test]
    fn ten_distinct_well_formed_codes() {
        let codes = generate_backup_codes(&OsRandom).unwrap();
        assert_eq!(codes.len(), BACKUP_CODE_COUNT);
        for (i, code) in codes.iter().enumerate() {
            let text = code.as_str();
            assert_eq!(text.len(), DISPLAY_LEN);
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(groups.len(), 6, "{text}");
            assert!(groups.iter().all(|g| g.len() == 4));
            let symbols: String = text.chars().filter(|&c| c != '-').collect();
            assert_eq!(symbols.len(), 24);
            assert!(symbols.bytes().all(|b| ALPHABET.contains(&b)), "{text}");
            assert!(!symbols.contains(['i', 'l', 'o', 'u']));
            assert_eq!(BackupCode::parse(text).unwrap(), *code);
            for other in codes.iter().skip(i + 1) {
                assert_ne!(code.as_str(), other.as_str());
            }
        }
    }

    #[test]
    fn codes_carry_120_bits() {
        // The first symbol takes the top 5 bits of the first byte, and the last symbol the
        // bottom 5 bits of the last: all 120 bits are used.
        #[derive(Debug)]
        struct Fixed(u8);
        impl RandomSource for Fixed {
            fn try_fill(&self, dest: &mut [u8]) -> Result<(), crate::rng::RandomError> {
                dest.fill(self.0);
                Ok(())
            }
        }
        assert_eq!(
            BackupCode::generate(&Fixed(0)).unwrap().as_str(),
            "0000-0000-0000-0000-0000-0000"
        );
        assert_eq!(
            BackupCode::generate(&Fixed(0xff)).unwrap().as_str(),
            "zzzz-zzzz-zzzz-zzzz-zzzz-zzzz"
        );
        // A generator stuck on one value cannot produce ten distinct codes.
        assert!(matches!(
            generate_backup_codes(&Fixed(7)),
            Err(MfaError::Random)
        ));
    }

    #[test]
    fn parse_normalises_what_people_type() {
        let code = BackupCode::parse("0123-4567-89ab-cdef-ghjk-mnpq").unwrap();
        assert_eq!(code.as_str(), "0123-4567-89ab-cdef-ghjk-mnpq");
        for typed in [
            "0123 4567 89ab cdef ghjk mnpq",
            "0123456789abcdefghjkmnpq",
            "  0123-4567-89AB-CDEF-GHJK-MNPQ ",
            "O123-4567-89ab-cdef-ghjk-mnpq",
            "o123-4567-89ab-cdef-ghjk-mnpq",
            "0I23-4567-89ab-cdef-ghjk-mnpq",
            "0l23-4567-89ab-cdef-ghjk-mnpq",
            "0L23--4567  89ab-cdef-ghjk-mnpq",
        ] {
            assert_eq!(BackupCode::parse(typed).unwrap(), code, "{typed:?}");
        }
        for (bad, err) in [
            ("", CodeError::WrongLength),
            ("0123-4567-89ab-cdef-ghjk-mnp", CodeError::WrongLength),
            ("0123-4567-89ab-cdef-ghjk-mnpqr", CodeError::WrongLength),
            ("u123-4567-89ab-cdef-ghjk-mnpq", CodeError::Malformed),
            ("0123_4567-89ab-cdef-ghjk-mnpq", CodeError::Malformed),
            ("٠123-4567-89ab-cdef-ghjk-mnpq", CodeError::Malformed),
            ("0123\t4567-89ab-cdef-ghjk-mnpq", CodeError::Malformed),
            ("0123-4567-89ab-cdef-ghjk-mnpq\n", CodeError::Malformed),
            (&"-".repeat(65), CodeError::TooLong),
        ] {
            assert_eq!(BackupCode::parse(bad), Err(err), "{bad:?}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let code = BackupCode::parse("0123-4567-89ab-cdef-ghjk-mnpq").unwrap();
        assert_eq!(format!("{code:?}"), "BackupCode([REDACTED])");
        let hasher = BackupCodeHasher::new(&ring(&[("pep1", 0x41)]));
        let shown = format!("{hasher:?}");
        assert!(shown.contains("pep1") && !shown.contains("65"), "{shown}");
    }

    #[test]
    fn hashes_bind_the_user_and_the_key() {
        let hasher = BackupCodeHasher::new(&ring(&[("k1", 1)]));
        let alice = UserId::from_stored("alice".into());
        let bob = UserId::from_stored("bob".into());
        let code = BackupCode::generate(&OsRandom).unwrap();
        let (id, for_alice) = hasher.hash(&alice, &code);
        assert_eq!(id.as_str(), "k1");
        assert_eq!(hasher.hash(&alice, &code).1, for_alice);
        assert_ne!(hasher.hash(&bob, &code).1, for_alice);
        let typed = BackupCode::parse(&code.as_str().to_uppercase().replace('-', " ")).unwrap();
        assert_eq!(hasher.hash(&alice, &typed).1, for_alice);
        let other_pepper = BackupCodeHasher::new(&ring(&[("k1", 2)]));
        assert_ne!(other_pepper.hash(&alice, &code).1, for_alice);
        // Length prefixes: moving a character between user id and code changes the hash.
        assert_ne!(
            mac(&[0; 32], &UserId::from_stored("ab".into()), b"c"),
            mac(&[0; 32], &UserId::from_stored("a".into()), b"bc")
        );
    }

    // SECURITY.md #36: a code hashed under an old pepper still verifies after rotation.
    #[test]
    fn rotation_keeps_old_hashes_among_the_candidates() {
        let user = UserId::from_stored("u".into());
        let code = BackupCode::generate(&SeededRandom::new(5)).unwrap();
        let (old_id, old_hash) = BackupCodeHasher::new(&ring(&[("k1", 1)])).hash(&user, &code);
        assert_eq!(old_id.as_str(), "k1");

        let rotated = BackupCodeHasher::new(&ring(&[("k2", 2), ("k1", 1)]));
        let (new_id, new_hash) = rotated.hash(&user, &code);
        assert_eq!(new_id.as_str(), "k2");
        let candidates = rotated.candidates(&user, &code);
        assert_eq!(candidates, vec![new_hash, old_hash]);

        let retired = BackupCodeHasher::new(&ring(&[("k2", 2)]));
        assert!(!retired.candidates(&user, &code).contains(&old_hash));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,80}") {
            if let Ok(code) = BackupCode::parse(&input) {
                prop_assert_eq!(code.as_str().len(), DISPLAY_LEN);
                prop_assert_eq!(BackupCode::parse(code.as_str()).unwrap(), code);
            }
        }

        #[test]
        fn display_form_parses_to_itself(seed in any::<u64>()) {
            let code = BackupCode::generate(&SeededRandom::new(seed)).unwrap();
            prop_assert_eq!(BackupCode::parse(code.as_str()).unwrap(), code);
        }
    }
}
