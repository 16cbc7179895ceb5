use std::sync::Arc;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::PasswordError;
use super::legacy::LegacyHash;
use super::phc::Argon2Phc;
use crate::rng::{RandomSource, random_array};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP's minimum for argon2id: m = 19456 KiB (19 MiB), t = 2, p = 1 (SECURITY.md #18).
    pub const OWASP_MINIMUM: Self = Self {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// Refuses parameters weaker than every row of OWASP's table of equivalent settings
    /// (46 MiB/t=1, 19 MiB/t=2, 12 MiB/t=3, 9 MiB/t=4, 7 MiB/t≥5).
    pub fn validate(&self) -> Result<(), PasswordError> {
        let floor_kib = match self.t_cost {
            0 => return Err(PasswordError::Params("t_cost must be at least 1")),
            1 => 47_104,
            2 => 19_456,
            3 => 12_288,
            4 => 9_216,
            _ => 7_168,
        };
        if self.m_cost_kib < floor_kib {
            return Err(PasswordError::Params(
                "m_cost is below OWASP's minimum for this t_cost",
            ));
        }
        if self.p_cost == 0 || self.p_cost > 16 {
            return Err(PasswordError::Params("p_cost must be between 1 and 16"));
        }
        if self.m_cost_kib > super::phc::MAX_STORED_M_COST {
            return Err(PasswordError::Params("m_cost above 1 GiB"));
        }
        Ok(())
    }

    fn argon2(&self, output_len: usize) -> Result<Params, PasswordError> {
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(output_len))
            .map_err(|_| PasswordError::Params("rejected by argon2"))
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP_MINIMUM
    }
}

/// Outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verification {
    /// The password matches; `needs_rehash` when the stored hash used other parameters or
    /// another algorithm (a legacy hash always does).
    Match {
        /// Rehash with the current parameters and store the new hash.
        needs_rehash: bool,
    },
    /// The password does not match (or the account has no usable hash).
    Mismatch,
}

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// Hashes and verifies passwords off the async executor, a bounded number at a time.
///
/// Cloning is cheap and shares the hashing threads.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: HashParams,
    max_concurrent: usize,
    /// Queue of the hashing threads; dropping the last sender ends them.
    jobs: crossbeam_channel::Sender<Job>,
    rng: Arc<dyn RandomSource>,
    /// A hash of a random password, verified against for unknown users.
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.inner.params)
            .field("max_concurrent", &self.inner.max_concurrent)
            .finish_non_exhaustive()
    }
}

/// The default bound on concurrent hashes: the number of available cores.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

impl PasswordHasher {
    /// A hasher with `params`, at most `max_concurrent` hashes at once (`None`: one per core).
    ///
    /// Computes the dummy hash once, so this takes as long as one hash.
    pub async fn new(
        params: HashParams,
        max_concurrent: Option<usize>,
        rng: Arc<dyn RandomSource>,
    ) -> Result<Self, PasswordError> {
        params.validate()?;
        params.argon2(OUTPUT_LEN)?;
        let max_concurrent = max_concurrent.unwrap_or_else(default_concurrency).max(1);
        let mut hasher = Self {
            inner: Arc::new(Inner {
                params,
                max_concurrent,
                jobs: spawn_workers(max_concurrent)?,
                rng,
                dummy: String::new(),
            }),
        };
        let random: [u8; 24] = random_array(hasher.inner.rng.as_ref())?;
        let dummy_password = SecretString::from(crate::util::hex_lower(&random));
        let dummy = hasher.hash(&dummy_password).await?;
        if let Some(inner) = Arc::get_mut(&mut hasher.inner) {
            inner.dummy = dummy;
        }
        Ok(hasher)
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> HashParams {
        self.inner.params
    }

    /// The number of hashing threads (the bound on concurrent hashes).
    pub fn max_concurrent(&self) -> usize {
        self.inner.max_concurrent
    }

    /// Hashes `password` with a fresh salt; returns the PHC string.
    pub async fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let salt: [u8; SALT_LEN] = random_array(self.inner.rng.as_ref())?;
        let params = self.inner.params;
        let argon2_params = params.argon2(OUTPUT_LEN)?;
        let pw = Zeroizing::new(password.expose_secret().as_bytes().to_vec());
        self.run(move |blocks| {
            let mut out = [0u8; OUTPUT_LEN];
            compute(&argon2_params, &pw, &salt, &mut out, blocks)?;
            Ok(Argon2Phc {
                m_cost: params.m_cost_kib,
                t_cost: params.t_cost,
                p_cost: params.p_cost,
                salt: salt.to_vec(),
                hash: out.to_vec(),
            }
            .encode())
        })
        .await
    }

    /// Verifies `password` against `stored`: an argon2id PHC string, or a legacy hash
    /// ([`HashKind`](super::HashKind): bcrypt, PBKDF2-SHA256, Django), which on success answers
    /// `needs_rehash` so that the login replaces it with argon2id. With no stored hash, or one
    /// that cannot be parsed (or asks for more work than the limits allow), it verifies against
    /// the dummy hash and answers `Mismatch`, so that missing accounts and accounts without a
    /// password cost the same as a wrong password.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> Result<Verification, PasswordError> {
        let parsed = stored.and_then(|s| {
            if let Some(phc) = Argon2Phc::parse(s) {
                return Some(Stored::Argon2(phc));
            }
            if let Some(legacy) = LegacyHash::parse(s) {
                return Some(Stored::Legacy(legacy));
            }
            tracing::warn!(
                "stored password hash is not in a supported format or exceeds the cost limits; treated as no password"
            );
            None
        });
        match parsed {
            Some(Stored::Argon2(phc)) => self.verify_argon2(password, phc, true).await,
            Some(Stored::Legacy(legacy)) => self.verify_legacy(password, legacy).await,
            None => {
                let dummy = Argon2Phc::parse(&self.inner.dummy).ok_or(PasswordError::Argon2)?;
                self.verify_argon2(password, dummy, false).await
            }
        }
    }

    /// argon2id against `phc`; `real` is false for the dummy (which then never matches).
    async fn verify_argon2(
        &self,
        password: &SecretString,
        phc: Argon2Phc,
        real: bool,
    ) -> Result<Verification, PasswordError> {
        let current = self.inner.params;
        let needs_rehash = phc.m_cost != current.m_cost_kib
            || phc.t_cost != current.t_cost
            || phc.p_cost != current.p_cost
            || phc.salt.len() < SALT_LEN
            || phc.hash.len() != OUTPUT_LEN;
        let stored_params = HashParams {
            m_cost_kib: phc.m_cost,
            t_cost: phc.t_cost,
            p_cost: phc.p_cost,
        }
        .argon2(phc.hash.len())?;
        let padding = padding_params(&phc, &current)?;
        let pw = Zeroizing::new(password.expose_secret().as_bytes().to_vec());
        let matches = self
            .run(move |blocks| {
                let mut out = Zeroizing::new(vec![0u8; phc.hash.len()]);
                compute(&stored_params, &pw, &phc.salt, &mut out, blocks)?;
                let matches = bool::from(out.as_slice().ct_eq(&phc.hash));
                if let Some(padding) = padding {
                    // Pad to the current cost (Django's "harden runtime", CVE-2016-2513), so
                    // that a weaker stored hash does not make this account answer faster than
                    // an unknown one.
                    let mut sink = [0u8; OUTPUT_LEN];
                    compute(&padding, &pw, &[0u8; SALT_LEN], &mut sink, blocks)?;
                }
                Ok(matches)
            })
            .await?;
        Ok(if matches && real {
            Verification::Match { needs_rehash }
        } else {
            Verification::Mismatch
        })
    }

    /// A legacy hash, then a full argon2id verification at the current parameters (against
    /// the dummy): whatever the legacy scheme costs, this account never answers faster than an
    /// unknown one (SECURITY.md #20, Django CVE-2016-2513). Both run on the hashing thread.
    async fn verify_legacy(
        &self,
        password: &SecretString,
        legacy: LegacyHash,
    ) -> Result<Verification, PasswordError> {
        let dummy = Argon2Phc::parse(&self.inner.dummy).ok_or(PasswordError::Argon2)?;
        let current = self.inner.params.argon2(dummy.hash.len())?;
        let pw = Zeroizing::new(password.expose_secret().as_bytes().to_vec());
        let matches = self
            .run(move |blocks| {
                let matches = legacy.verify(&pw);
                let mut sink = Zeroizing::new(vec![0u8; dummy.hash.len()]);
                compute(&current, &pw, &dummy.salt, &mut sink, blocks)?;
                Ok(matches)
            })
            .await?;
        Ok(if matches {
            Verification::Match { needs_rehash: true }
        } else {
            Verification::Mismatch
        })
    }

    /// Runs `work` on one of the hashing threads and waits for it without blocking the
    /// executor.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |blocks| {
            // The request went away while its job was queued: nobody waits for the answer.
            if done.is_closed() {
                return;
            }
            let _ = done.send(work(blocks));
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| PasswordError::TaskFailed)?;
        result.await.map_err(|_| PasswordError::TaskFailed)?
    }
}

/// A stored hash this hasher can verify.
enum Stored {
    Argon2(Argon2Phc),
    Legacy(LegacyHash),
}

/// A unit of hashing work, given the worker's argon2 work area.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Starts `n` hashing threads. Why threads of our own rather than `spawn_blocking` behind a
/// semaphore:
/// - the bound on concurrent hashes is the number of threads, and a cancelled request can
///   never let more hashes run at once (its queued job is skipped);
/// - each thread owns one argon2 work area for its whole life, so memory stays at
///   `n × m_cost` however many logins arrive (peers that allocate 19 MiB per hash have been
///   measured at ~1 GiB RSS under a login storm);
/// - the threads run at the lowest scheduling priority, so that on a busy core request
///   handling preempts hashing: a login storm slows logins, not every other request.
fn spawn_workers(n: usize) -> Result<crossbeam_channel::Sender<Job>, PasswordError> {
    let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
    for i in 0..n {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("authkit-argon2-{i}"))
            .spawn(move || {
                lower_priority();
                let mut blocks = Vec::new();
                while let Ok(job) = queue.recv() {
                    // argon2 does not panic on validated input; if anything ever does, keep
                    // the worker (the waiting request gets `TaskFailed`).
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(&mut blocks);
                    }));
                    if outcome.is_err() {
                        blocks = Vec::new();
                    }
                }
            })
            .map_err(|_| PasswordError::TaskFailed)?;
    }
    Ok(jobs)
}

fn lower_priority() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    if let Err(e) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::debug!(error = ?e, "could not lower the priority of a hashing thread");
    }
}

/// Extra work that brings a verification at `stored` parameters up to the cost of `current`
/// (argon2 costs about `m × t` block operations), or `None` when it already costs as much.
fn padding_params(
    stored: &Argon2Phc,
    current: &HashParams,
) -> Result<Option<Params>, PasswordError> {
    let work = |m: u32, t: u32| u64::from(m) * u64::from(t);
    let missing =
        work(current.m_cost_kib, current.t_cost).saturating_sub(work(stored.m_cost, stored.t_cost));
    // Below 1/16 of the current cost the difference is lost in noise.
    if missing * 16 < work(current.m_cost_kib, current.t_cost) {
        return Ok(None);
    }
    let m = u32::try_from(missing.div_ceil(u64::from(current.t_cost.max(1))))
        .unwrap_or(current.m_cost_kib)
        .clamp(8, current.m_cost_kib);
    HashParams {
        m_cost_kib: m,
        t_cost: current.t_cost,
        p_cost: 1,
    }
    .argon2(OUTPUT_LEN)
    .map(Some)
}

/// argon2id into `out`, growing the pooled work area when these parameters need more.
fn compute(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    blocks: &mut Vec<Block>,
) -> Result<(), PasswordError> {
    let needed = params.block_count();
    if blocks.len() < needed {
        blocks.resize(needed, Block::new());
    }
    let area = blocks.get_mut(..needed).ok_or(PasswordError::Argon2)?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt, out, area)
        .map_err(|_| PasswordError::Argon2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::OsRandom;

    async fn hasher() -> PasswordHasher {
        PasswordHasher::new(HashParams::default(), Some(2), Arc::new(OsRandom))
            .await
            .unwrap()
    }

    // SECURITY.md #18
    #[tokio::test]
    async fn hashes_with_owasp_argon2id_and_unique_salts() {
        let h = hasher().await;
        let pw = SecretString::from("correct horse battery staple");
        let a = h.hash(&pw).await.unwrap();
        let b = h.hash(&pw).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "two hashes of one password must differ (salt)");
        assert_eq!(
            h.verify(&pw, Some(&a)).await.unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        let wrong = SecretString::from("correct horse battery stapler");
        assert_eq!(
            h.verify(&wrong, Some(&a)).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn unknown_users_and_garbage_hashes_never_match() {
        let h = hasher().await;
        let pw = SecretString::from("whatever it is");
        assert_eq!(h.verify(&pw, None).await.unwrap(), Verification::Mismatch);
        assert_eq!(
            h.verify(&pw, Some("not a hash")).await.unwrap(),
            Verification::Mismatch
        );
        // The dummy's own password is random and unknown, so even guessing the dummy fails.
        assert_eq!(
            h.verify(&pw, Some(&h.inner.dummy.clone())).await.unwrap(),
            Verification::Mismatch
        );
    }

    // Legacy hashes always ask for an argon2id rehash;
    // unusable ones behave like no password. Vectors: see `legacy.rs`.
    #[tokio::test]
    async fn legacy_hashes_match_and_ask_for_a_rehash() {
        let h = hasher().await;
        let bcrypt = "$2b$05$P9UdwfeZwAmSwLFXtORG7O/QGRHg0yAgzwSY/18kDBctcvXweqti6";
        let django = "pbkdf2_sha256$1000$seasalt$JgZryXe2Ga8ysg6XbzkLpTdyPQrHqsinbL9BnnhgX4A=";
        for (stored, password) in [
            (bcrypt, "correct horse battery staple"),
            (django, "lètmein"),
        ] {
            assert_eq!(
                h.verify(&SecretString::from(password), Some(stored))
                    .await
                    .unwrap(),
                Verification::Match { needs_rehash: true },
                "{stored}"
            );
            assert_eq!(
                h.verify(&SecretString::from(format!("{password}x")), Some(stored))
                    .await
                    .unwrap(),
                Verification::Mismatch,
                "{stored}"
            );
        }
        // Over the cost limit: no usable hash, even with the right password.
        let too_costly = bcrypt.replacen("$05$", "$17$", 1);
        assert_eq!(
            h.verify(
                &SecretString::from("correct horse battery staple"),
                Some(&too_costly)
            )
            .await
            .unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn older_parameters_verify_and_ask_for_a_rehash() {
        let strong = PasswordHasher::new(
            HashParams {
                m_cost_kib: 12_288,
                t_cost: 3,
                p_cost: 1,
            },
            Some(1),
            Arc::new(OsRandom),
        )
        .await
        .unwrap();
        let pw = SecretString::from("a long enough passphrase");
        let old = strong.hash(&pw).await.unwrap();
        let current = hasher().await;
        assert_eq!(
            current.verify(&pw, Some(&old)).await.unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    // SECURITY.md #20 / Django CVE-2016-2513: weaker stored hashes are padded to the current
    // cost; equal or stronger ones are not.
    #[test]
    fn pads_only_verifications_of_weaker_hashes() {
        let current = HashParams::default();
        let phc = |m, t| Argon2Phc {
            m_cost: m,
            t_cost: t,
            p_cost: 1,
            salt: vec![0; 16],
            hash: vec![0; 32],
        };
        assert!(padding_params(&phc(19_456, 2), &current).unwrap().is_none());
        assert!(padding_params(&phc(65_536, 3), &current).unwrap().is_none());
        let pad = padding_params(&phc(8_192, 2), &current).unwrap().unwrap();
        assert_eq!((pad.m_cost(), pad.t_cost()), (11_264, 2));
        let pad = padding_params(&phc(4_096, 1), &current).unwrap().unwrap();
        assert_eq!(pad.m_cost(), 17_408);
    }

    #[test]
    fn refuses_parameters_below_owasp() {
        assert!(
            HashParams {
                m_cost_kib: 19_455,
                t_cost: 2,
                p_cost: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            HashParams {
                m_cost_kib: 19_456,
                t_cost: 1,
                p_cost: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            HashParams {
                m_cost_kib: 47_104,
                t_cost: 1,
                p_cost: 1
            }
            .validate()
            .is_ok()
        );
        assert!(
            HashParams {
                m_cost_kib: 7_168,
                t_cost: 5,
                p_cost: 1
            }
            .validate()
            .is_ok()
        );
        assert!(
            HashParams {
                m_cost_kib: 19_456,
                t_cost: 2,
                p_cost: 0
            }
            .validate()
            .is_err()
        );
    }
}
