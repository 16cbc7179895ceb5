//! The PHC string form of argon2id hashes: `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// A parsed argon2id PHC string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Argon2Phc {
    pub(crate) m_cost: u32,
    pub(crate) t_cost: u32,
    pub(crate) p_cost: u32,
    pub(crate) salt: Vec<u8>,
    pub(crate) hash: Vec<u8>,
}

/// Largest `m` (KiB) accepted from a stored hash: 1 GiB. Bounds the memory a corrupt or
/// hostile row could make a verification allocate.
pub(crate) const MAX_STORED_M_COST: u32 = 1 << 20;

impl Argon2Phc {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('$');
        if !parts.next()?.is_empty() || parts.next()? != "argon2id" || parts.next()? != "v=19" {
            return None;
        }
        let (mut m, mut t, mut p) = (None, None, None);
        for kv in parts.next()?.split(',') {
            let (k, v) = kv.split_once('=')?;
            let v: u32 = v.parse().ok()?;
            let slot = match k {
                "m" => &mut m,
                "t" => &mut t,
                "p" => &mut p,
                _ => return None,
            };
            if slot.replace(v).is_some() {
                return None;
            }
        }
        let salt = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        let hash = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        let phc = Self {
            m_cost: m?,
            t_cost: t?,
            p_cost: p?,
            salt,
            hash,
        };
        let sane = (8..=MAX_STORED_M_COST).contains(&phc.m_cost)
            && (1..=64).contains(&phc.t_cost)
            && (1..=16).contains(&phc.p_cost)
            && (8..=64).contains(&phc.salt.len())
            && (16..=64).contains(&phc.hash.len());
        sane.then_some(phc)
    }

    pub(crate) fn encode(&self) -> String {
        format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.m_cost,
            self.t_cost,
            self.p_cost,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let phc = Argon2Phc {
            m_cost: 19456,
            t_cost: 2,
            p_cost: 1,
            salt: vec![7; 16],
            hash: vec![9; 32],
        };
        let s = phc.encode();
        assert!(s.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(Argon2Phc::parse(&s), Some(phc));
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        for bad in [
            "",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA$extra",
            "$2b$12$abcdefghijklmnopqrstuu",
        ] {
            assert_eq!(Argon2Phc::parse(bad), None, "{bad}");
        }
    }
}
