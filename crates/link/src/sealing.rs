//! Sealing small secrets that must travel in the event log, such as S3 secret access keys
//! (SigV4 needs the secret itself on the server, not a hash of it): ChaCha20-Poly1305 under a
//! key derived from the cluster secret, bound to a context (the key id) so that a sealed
//! secret cannot be moved to another record. The key comes from the same Argon2id output as
//! the cluster CA, so a log or snapshot that leaks gives an attacker only the slow guessing
//! game against the cluster secret that a captured certificate does.
//!
//! A cluster without a secret seals under a well-known key: its cluster listener takes anyone,
//! who can read the log there anyway, so sealing could not protect it; the client listener
//! still hands out a secret only to its owner.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// Derivation label of the sealing key: versioned, so a future scheme can never collide.
const SEALING_LABEL: &[u8] = b"redcloud secret sealing key v1";
/// The format byte every sealed secret starts with.
const SEALED_V1: u8 = 1;

/// Why a sealed secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Too short, or of an unknown format.
    #[error("not a sealed secret")]
    Malformed,
    /// Sealed under another cluster secret, for another context, or altered.
    #[error(
        "the sealed secret does not open under this cluster's key (another cluster secret, or altered)"
    )]
    WrongKey,
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
}

/// Seals and opens secrets under the cluster's sealing key.
pub struct SecretSealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(<redacted>)")
    }
}

impl SecretSealer {
    /// The sealer of the cluster whose secret gave `seed` (the Argon2id output the CA key
    /// comes from).
    pub(crate) fn from_seed(seed: &[u8; 32]) -> Self {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, seed), SEALING_LABEL);
        Self::with_key(tag.as_ref())
    }

    /// The sealer of a cluster without a secret (see the module's comment).
    pub fn well_known() -> Self {
        Self::from_seed(&[0; 32])
    }

    fn with_key(key: &[u8]) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key)
            .expect("HMAC-SHA256 gives the 32 bytes ChaCha20-Poly1305 takes");
        Self {
            key: LessSafeKey::new(key),
        }
    }

    /// `secret` sealed for `context`: format byte, random nonce, ciphertext and tag.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut body = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut body,
            )
            .map_err(|_| SealError::Malformed)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + body.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The secret `sealed` holds, if it was sealed by this cluster for `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&format, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
        if format != SEALED_V1 || rest.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(SealError::Malformed);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut body = body.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| SealError::WrongKey)?;
        Ok(opened.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_and_context() {
        let sealer = SecretSealer::from_seed(&[7; 32]);
        let sealed = sealer.seal(b"RCKEY1", b"the secret").unwrap();
        assert!(
            !sealed.windows(10).any(|w| w == b"the secret"),
            "the plaintext is not in the sealed bytes"
        );
        assert_eq!(sealer.open(b"RCKEY1", &sealed).unwrap(), b"the secret");
        assert_ne!(
            sealer.seal(b"RCKEY1", b"the secret").unwrap(),
            sealed,
            "a fresh nonce every time"
        );

        assert_eq!(
            sealer.open(b"RCKEY2", &sealed),
            Err(SealError::WrongKey),
            "moved to another key id"
        );
        assert_eq!(
            SecretSealer::from_seed(&[8; 32]).open(b"RCKEY1", &sealed),
            Err(SealError::WrongKey),
            "another cluster"
        );
        assert_eq!(
            SecretSealer::well_known().open(b"RCKEY1", &sealed),
            Err(SealError::WrongKey)
        );
        for at in [1, 13, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert_eq!(sealer.open(b"RCKEY1", &altered), Err(SealError::WrongKey));
        }
        for malformed in [&[][..], &[SEALED_V1], &sealed[..20], &[2; 64]] {
            assert_eq!(sealer.open(b"RCKEY1", malformed), Err(SealError::Malformed));
        }
    }
}
