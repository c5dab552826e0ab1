//! Passwords (argon2id), signed access tokens (HMAC-SHA256) and refresh tokens.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::UserId;

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored PHC hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody has, verified against when the username does not exist so that
/// a login answers in the same time either way.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("papo-no-such-user").expect("argon2 works"))
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub uid: UserId,
    /// Username.
    pub name: String,
    /// Session id (revoked at logout).
    pub sid: String,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

/// Signs and checks access tokens. The secret never leaves this struct (a `secrecy` box:
/// redacted Debug, zeroed on drop).
#[derive(Debug, Clone)]
pub struct TokenSigner {
    secret: SecretSlice<u8>,
}

type HmacSha256 = Hmac<Sha256>;

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        TokenSigner {
            secret: secret.to_vec().into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.secret.expose_secret())
            .expect("HMAC takes keys of any size")
    }

    /// `v1.<claims>.<signature>`, both base64url.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let mut mac = self.mac();
        mac.update(b"v1.");
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("v1.{body}.{sig}")
    }

    /// Verifies signature and expiry (`now` in unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Invalid)?;
        let mut mac = self.mac();
        mac.update(b"v1.");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Invalid)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// A fresh random refresh token (256 bits, hex).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps of a refresh token: its SHA-256, so a leaked database cannot sign in.
pub fn refresh_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            uid: 1,
            name: "ana".into(),
            sid: "s".into(),
            exp,
        }
    }

    #[test]
    fn token_round_trip_and_expiry() {
        let s = TokenSigner::new(b"secret");
        let t = s.sign(&claims(100));
        assert_eq!(s.verify(&t, 99).unwrap(), claims(100));
        assert_eq!(s.verify(&t, 100), Err(TokenError::Expired));
    }

    #[test]
    fn debug_of_the_signer_hides_its_secret() {
        let key = b"s3cr3t-signing-key-0123456789";
        let shown = format!("{:?}", TokenSigner::new(key));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        // Nor as the byte list a derived Debug of the bytes would print.
        let bytes = format!("{:?}", key.to_vec());
        assert!(!shown.contains(&bytes[1..bytes.len() - 1]), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn forged_or_garbled_tokens_are_invalid() {
        let s = TokenSigner::new(b"secret");
        let other = TokenSigner::new(b"other");
        let t = other.sign(&claims(100));
        assert_eq!(s.verify(&t, 1), Err(TokenError::Invalid));
        for bad in ["", "v1", "v1..", "v2.a.b", "v1.a.b.c", "not a token"] {
            assert_eq!(s.verify(bad, 1), Err(TokenError::Invalid), "{bad}");
        }
        // Tampered claims with the original signature.
        let good = s.sign(&claims(100));
        let parts: Vec<&str> = good.split('.').collect();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(10_000)).unwrap());
        let forged = format!("v1.{forged_body}.{}", parts[2]);
        assert_eq!(s.verify(&forged, 1), Err(TokenError::Invalid));
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
