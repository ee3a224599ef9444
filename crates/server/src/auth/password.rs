//! Password hashing with bcrypt. Hashing is CPU-bound (about a quarter second at cost 12), so it
//! runs on the blocking pool, never on the async workers.

use std::sync::Arc;

use crate::error::ApiError;

/// Hashes and verifies passwords at one configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    /// A real hash of a random password, verified against when the username is unknown so that
    /// "no such user" takes as long as "wrong password" and the two cannot be told apart.
    dummy_hash: Arc<str>,
}

/// The shortest password `user add` accepts (the architecture document's rule).
pub const MIN_PASSWORD_LEN: usize = 8;

impl PasswordHasher {
    pub async fn new(cost: u32) -> Result<Self, ApiError> {
        let throwaway: [u8; 16] = rand::random();
        let dummy =
            hash_blocking(throwaway.iter().map(|b| format!("{b:02x}")).collect(), cost).await?;
        Ok(Self {
            cost,
            dummy_hash: dummy.into(),
        })
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        hash_blocking(password.to_owned(), self.cost).await
    }

    /// True only when `stored_hash` is present and matches. A missing hash still costs one full
    /// verification.
    pub async fn verify(&self, password: &str, stored_hash: Option<&str>) -> bool {
        let (hash, known) = match stored_hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let password = password.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        matches && known
    }
}

async fn hash_blocking(password: String, cost: u32) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let hasher = PasswordHasher::new(4).await.unwrap();
        let hash = hasher.hash("TestPassword123!").await.unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(hasher.verify("TestPassword123!", Some(&hash)).await);
        assert!(!hasher.verify("testpassword123!", Some(&hash)).await);
        assert!(!hasher.verify("TestPassword123!", None).await);
        assert!(!hasher.verify("x", Some("not a bcrypt hash")).await);
    }

    #[tokio::test]
    async fn production_cost_is_twelve() {
        let hasher = PasswordHasher::new(crate::config::PRODUCTION_BCRYPT_COST)
            .await
            .unwrap();
        assert!(hasher.hash("pw").await.unwrap().starts_with("$2b$12$"));
    }
}
