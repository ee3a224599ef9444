//! Access tokens: JWT signed with HS256, and only HS256 accepted.

use std::time::Duration;

use chrono::Utc;
use domain::{UserId, Username};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtSecret;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: UserId,
    pub username: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// The account's token epoch when this token was minted; the token is revoked once the
    /// account's epoch has moved on (see [`crate::auth::standing`]). Tokens minted before epochs
    /// existed carry none and count as epoch 0, the epoch every account started at.
    #[serde(default)]
    pub epoch: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, missing claims: all the same to a caller.
    #[error("token invalid")]
    Invalid,
}

/// An issued token and the moment it stops being accepted.
pub struct IssuedToken {
    pub token: String,
    pub expires_at: chrono::DateTime<Utc>,
    pub lifetime: Duration,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl JwtKeys {
    pub fn new(secret: &JwtSecret, lifetime: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            lifetime,
        }
    }

    pub fn issue(
        &self,
        user: UserId,
        username: &Username,
        epoch: i64,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let now = Utc::now();
        let expires_at =
            now + chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::days(1));
        let claims = Claims {
            sub: user,
            username: username.as_str().to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            epoch,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_at,
            lifetime: self.lifetime,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn keys() -> JwtKeys {
        let config = crate::config::Config::from_lookup(|name| match name {
            "JWT_SECRET_KEY" => Some("an-ample-test-secret-of-forty-characters!".into()),
            "TRANSCRIPT_ENCRYPTION_KEY" => {
                Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into())
            }
            _ => None,
        })
        .unwrap();
        JwtKeys::new(&config.jwt_secret, Duration::from_secs(60))
    }

    fn user() -> (UserId, Username) {
        (UserId::new(), Username::parse(r"\COLLEGE\jdoe").unwrap())
    }

    #[test]
    fn round_trips_its_own_tokens() {
        let keys = keys();
        let (id, name) = user();
        let issued = keys.issue(id, &name, 7).unwrap();
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!(claims.epoch, 7);
        assert_eq!(claims.sub, id);
        assert_eq!(claims.username, name.as_str());
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn refuses_alg_none_and_altered_payloads() {
        let keys = keys();
        let (id, name) = user();
        let token = keys.issue(id, &name, 0).unwrap().token;
        let parts: Vec<&str> = token.split('.').collect();

        let none_header = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            keys.verify(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );

        let mut payload: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = serde_json::json!(UserId::new());
        let altered = B64.encode(payload.to_string());
        assert_eq!(
            keys.verify(&format!("{}.{altered}.{}", parts[0], parts[2])),
            Err(TokenError::Invalid)
        );

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &keys.verify(&token).unwrap(),
            &EncodingKey::from_secret(b"an-ample-test-secret-of-forty-characters!"),
        )
        .unwrap();
        assert_eq!(keys.verify(&hs512), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_say_so() {
        let keys = keys();
        let (id, name) = user();
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: id,
            username: name.to_string(),
            iat: now - 7200,
            exp: now - 3600,
            epoch: 0,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"an-ample-test-secret-of-forty-characters!"),
        )
        .unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
    }
}
