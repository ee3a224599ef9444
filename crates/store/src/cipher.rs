use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use domain::TranscriptText;
use std::fmt;

const NONCE_LEN: usize = 12;

/// Encrypts transcript text for storage with AES-256-GCM.
///
/// Each row gets a fresh random 96-bit nonce; the stored value is `nonce || ciphertext || tag`.
/// The key never appears in `Debug` output.
#[derive(Clone)]
pub struct TranscriptCipher {
    aead: Aes256Gcm,
}

/// Stored transcript bytes that could not be decrypted: a wrong key or a corrupted row.
#[derive(Debug, thiserror::Error)]
#[error(
    "transcript text could not be decrypted (wrong TRANSCRIPT_ENCRYPTION_KEY or corrupted row)"
)]
pub struct DecryptError;

impl TranscriptCipher {
    pub const KEY_LEN: usize = 32;

    pub fn new(key: [u8; 32]) -> Self {
        Self {
            aead: Aes256Gcm::new(&key.into()),
        }
    }

    /// A fresh random key, for deployments that generate and keep their own.
    pub fn generate_key() -> [u8; 32] {
        Aes256Gcm::generate_key(&mut OsRng).into()
    }

    pub fn encrypt(&self, text: &TranscriptText) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(&nonce, text.as_str().as_bytes())
            // Only fails for inputs beyond 64 GiB, which a transcript line never is.
            .expect("AES-GCM encryption of a transcript line");
        let mut stored = Vec::with_capacity(NONCE_LEN + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        stored
    }

    pub fn decrypt(&self, stored: &[u8]) -> Result<TranscriptText, DecryptError> {
        if stored.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| DecryptError)?;
        String::from_utf8(plain)
            .map(TranscriptText::new)
            .map_err(|_| DecryptError)
    }
}

impl fmt::Debug for TranscriptCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TranscriptCipher(AES-256-GCM, key hidden)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_a_fresh_nonce_each_time() {
        let cipher = TranscriptCipher::new([7; 32]);
        let text = TranscriptText::new("I can't sleep before exams");
        let a = cipher.encrypt(&text);
        let b = cipher.encrypt(&text);
        assert_ne!(a, b, "same text must not give the same bytes");
        assert_eq!(cipher.decrypt(&a).unwrap(), text);
        assert_eq!(cipher.decrypt(&b).unwrap(), text);
    }

    #[test]
    fn wrong_key_or_tampering_is_detected() {
        let stored = TranscriptCipher::new([1; 32]).encrypt(&TranscriptText::new("hello"));
        assert!(TranscriptCipher::new([2; 32]).decrypt(&stored).is_err());
        let mut tampered = stored.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(TranscriptCipher::new([1; 32]).decrypt(&tampered).is_err());
        assert!(TranscriptCipher::new([1; 32])
            .decrypt(&stored[..5])
            .is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", TranscriptCipher::new([9; 32])).contains('9'));
    }
}
