//! The Secrets service: one AES-256-GCM helper for every secret stored at rest (per-group API
//! keys, channel credentials). Each value gets a fresh random 96-bit nonce and is bound to the
//! place it is stored (associated data), so a ciphertext copied into another column does not
//! decrypt. Format: `v1:` + base64(nonce || ciphertext || tag); the prefix lets a future format
//! coexist with this one.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret key must be 32 bytes (64 hex characters)")]
    BadKey,
    #[error("stored secret is not in a known format")]
    BadFormat,
    #[error("stored secret does not decrypt with this key (was GATEWAY_SECRET_KEY changed?)")]
    Undecryptable,
}

/// Encrypts and decrypts secrets with the gateway's key. Cheap to clone; holds no mutable state.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8]) -> Result<Self, SecretError> {
        let key: [u8; 32] = key.try_into().map_err(|_| SecretError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SecretError::BadKey)?;
        Ok(Self { cipher, key })
    }

    /// Encrypt `plain` for storage in the place named by `context` (e.g. `agent_groups.api_key`).
    pub fn seal(&self, context: &str, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: context.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
        )
    }

    /// Decrypt a value produced by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, SecretError> {
        let b64 = stored.strip_prefix(PREFIX).ok_or(SecretError::BadFormat)?;
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| SecretError::BadFormat)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SecretError::BadFormat);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::BadFormat)?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::BadFormat)
    }

    /// A key derived from the master key for another purpose (e.g. signing WebSocket tickets),
    /// so the encryption key itself is never used for two things.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let b = boxed();
        let a = b.seal("ctx", "sk-ant-secret");
        let c = b.seal("ctx", "sk-ant-secret");
        assert_ne!(a, c, "each value gets its own nonce");
        assert!(!a.contains("sk-ant-secret"));
        assert_eq!(b.open("ctx", &a).unwrap(), "sk-ant-secret");
    }

    #[test]
    fn wrong_context_key_or_format_is_refused() {
        let b = boxed();
        let sealed = b.seal("agent_groups.api_key", "x");
        assert_eq!(
            b.open("channels.config", &sealed),
            Err(SecretError::Undecryptable)
        );
        let other = SecretBox::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other.open("agent_groups.api_key", &sealed),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(b.open("x", "plain"), Err(SecretError::BadFormat));
        assert_eq!(b.open("x", "v1:!!"), Err(SecretError::BadFormat));
        assert_eq!(SecretBox::new(&[0u8; 5]).unwrap_err(), SecretError::BadKey);
    }
}
