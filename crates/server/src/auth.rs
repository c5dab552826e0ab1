//! Passwords (argon2id), access tokens (JWT, HS256, with key ids for rotation) and refresh
//! tokens.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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

/// What an access token says: a standard JWT (RFC 7519) claims set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `sub`: the user id, as a decimal string (JWT subjects are strings).
    #[serde(rename = "sub", with = "decimal")]
    pub uid: UserId,
    /// Username.
    pub name: String,
    /// The device session id (revoked at logout).
    pub sid: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// `sub` holds the numeric user id as a string.
mod decimal {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| D::Error::custom("sub is not a user id"))
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    /// Signed with a key this server does not hold: one retired by a rotation (or added by a
    /// rotation it has not loaded yet). Answered like an expired token: the client refreshes.
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token invalid")]
    Invalid,
}

/// The id (`kid` header) of a signing secret: the first 16 characters of the base64url
/// SHA-256 of the secret. It names the key without revealing anything of it, and needs no
/// configuration of its own.
pub fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    URL_SAFE_NO_PAD.encode(digest)[..16].to_string()
}

/// How the home-made tokens before JWTs began (`v1.<claims>.<mac>`); a JWT begins with `eyJ`.
const LEGACY_PREFIX: &str = "v1.";

/// One signing secret and its id.
struct Key {
    kid: String,
    secret: SecretSlice<u8>,
}

/// The keys valid now: the first signs, every one verifies (two during a rotation).
struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    fn new(secrets: &[Vec<u8>]) -> Self {
        assert!(!secrets.is_empty(), "at least one signing key");
        let mut keys: Vec<Key> = Vec::with_capacity(secrets.len());
        for s in secrets {
            let kid = key_id(s);
            if !keys.iter().any(|k| k.kid == kid) {
                keys.push(Key {
                    kid,
                    secret: s.clone().into(),
                });
            }
        }
        KeySet { keys }
    }
}

/// Signs and checks access tokens: HS256 JWTs with `kid`, `sub`, `sid`, `iat`, `exp`. The
/// secrets never leave this struct (`secrecy` boxes: redacted, zeroed on drop); the key set
/// can be replaced while serving ([`TokenSigner::replace`]), which is how a rotation reaches a
/// running server.
#[derive(Clone)]
pub struct TokenSigner {
    keys: Arc<RwLock<Arc<KeySet>>>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kids", &self.kids())
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

impl TokenSigner {
    /// One key, signing and verifying.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_keys(&[secret.to_vec()])
    }

    /// `secrets[0]` signs; all of them verify. Panics on an empty list.
    pub fn with_keys(secrets: &[Vec<u8>]) -> Self {
        TokenSigner {
            keys: Arc::new(RwLock::new(Arc::new(KeySet::new(secrets)))),
        }
    }

    /// Swaps in a new key set (a rotation); tokens signed with a dropped key are refused from
    /// now on with [`TokenError::UnknownKey`].
    pub fn replace(&self, secrets: &[Vec<u8>]) {
        *self.keys.write().unwrap() = Arc::new(KeySet::new(secrets));
    }

    /// The ids of the keys held, the signing one first.
    pub fn kids(&self) -> Vec<String> {
        self.current().keys.iter().map(|k| k.kid.clone()).collect()
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap().clone()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let keys = self.current();
        let key = &keys.keys[0];
        let header = Header {
            kid: Some(key.kid.clone()),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(key.secret.expose_secret()),
        )
        .expect("HS256 signing of plain claims cannot fail")
    }

    /// Verifies the signature (HS256 only, by the key its `kid` names) and the expiry against
    /// `now` (unix seconds, no leeway).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.starts_with(LEGACY_PREFIX) {
            // The envelope before JWTs: its key is retired, so the client refreshes (its refresh
            // token is still good) instead of being signed out by the upgrade.
            return Err(TokenError::UnknownKey);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let Some(kid) = header.kid else {
            return Err(TokenError::Invalid);
        };
        let keys = self.current();
        let Some(key) = keys.keys.iter().find(|k| k.kid == kid) else {
            return Err(TokenError::UnknownKey);
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the caller's clock, exactly (the library's check
        // reads the system clock and allows a minute of leeway).
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(key.secret.expose_secret()),
            &validation,
        )
        .map_err(|_| TokenError::Invalid)?
        .claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Reads a key file: one secret per line (at least 32 characters), the signing key first and
/// the keys still accepted after it; blank lines and `#` comments are skipped.
pub fn parse_key_file(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() < 32 {
            return Err(format!(
                "line {} is too short (a key needs at least 32 characters)",
                n + 1
            ));
        }
        keys.push(line.as_bytes().to_vec());
    }
    if keys.is_empty() {
        return Err("it holds no key".into());
    }
    Ok(keys)
}

/// The key file after a rotation: a fresh key signs, the old signing key is still accepted
/// (tokens it signed stay valid until they expire), older keys are dropped.
pub fn rotated_key_file(old: &[Vec<u8>]) -> (String, Vec<u8>) {
    let fresh = new_refresh_token().into_bytes(); // 256 random bits, hex
    let mut text =
        String::from("# Papo access-token keys: the first signs, the others are still accepted.\n");
    text.push_str(std::str::from_utf8(&fresh).expect("hex"));
    text.push('\n');
    if let Some(previous) = old.first() {
        text.push_str(&String::from_utf8_lossy(previous));
        text.push('\n');
    }
    (text, fresh)
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
            iat: 0,
            exp,
        }
    }

    fn segment(token: &str, i: usize) -> serde_json::Value {
        let part = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    const KEY_A: &[u8] = b"key-a-0123456789abcdef0123456789";
    const KEY_B: &[u8] = b"key-b-0123456789abcdef0123456789";

    #[test]
    fn a_token_is_a_standard_hs256_jwt_with_a_key_id() {
        let s = TokenSigner::new(KEY_A);
        let t = s.sign(&claims(100));
        let header = segment(&t, 0);
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], key_id(KEY_A));
        let body = segment(&t, 1);
        assert_eq!(body["sub"], "1");
        assert_eq!(
            (body["iat"].as_i64(), body["exp"].as_i64()),
            (Some(0), Some(100))
        );
        assert_eq!(body["sid"], "s");
        assert_eq!(s.verify(&t, 99).unwrap(), claims(100));
        assert_eq!(s.verify(&t, 100), Err(TokenError::Expired));
    }

    #[test]
    fn during_a_rotation_both_keys_verify_and_the_new_one_signs() {
        let old = TokenSigner::new(KEY_A);
        let before = old.sign(&claims(100));
        let s = TokenSigner::with_keys(&[KEY_B.to_vec(), KEY_A.to_vec()]);
        assert_eq!(s.kids(), vec![key_id(KEY_B), key_id(KEY_A)]);
        assert_eq!(s.verify(&before, 1).unwrap(), claims(100));
        let after = s.sign(&claims(100));
        assert_eq!(segment(&after, 0)["kid"], key_id(KEY_B));
        // A server still on the old set does not know the new key yet …
        assert_eq!(old.verify(&after, 1), Err(TokenError::UnknownKey));
        // … until it loads the rotated set; once the old key is dropped its tokens are refused.
        old.replace(&[KEY_B.to_vec()]);
        assert_eq!(old.verify(&after, 1).unwrap(), claims(100));
        assert_eq!(old.verify(&before, 1), Err(TokenError::UnknownKey));
    }

    #[test]
    fn debug_of_the_signer_hides_its_secret() {
        let key = b"s3cr3t-signing-key-0123456789";
        let shown = format!("{:?}", TokenSigner::new(key));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        // Nor as the byte list a derived Debug of the bytes would print.
        let bytes = format!("{:?}", key.to_vec());
        assert!(!shown.contains(&bytes[1..bytes.len() - 1]), "{shown}");
        assert!(
            shown.contains("REDACTED") && shown.contains(&key_id(key)),
            "{shown}"
        );
    }

    #[test]
    fn forged_or_garbled_tokens_are_invalid() {
        let s = TokenSigner::new(KEY_A);
        // Another secret presenting our key id.
        let forged = jsonwebtoken::encode(
            &Header {
                kid: Some(key_id(KEY_A)),
                ..Header::new(Algorithm::HS256)
            },
            &claims(100),
            &EncodingKey::from_secret(KEY_B),
        )
        .unwrap();
        assert_eq!(s.verify(&forged, 1), Err(TokenError::Invalid));
        // A token of the format before JWTs asks for a refresh, not a new sign-in.
        assert_eq!(
            s.verify("v1.eyJ1aWQiOjF9.c2ln", 1),
            Err(TokenError::UnknownKey)
        );
        for bad in ["", "v1", "a..", "v2.a.b", "a.b.c.d", "not a token"] {
            assert_eq!(s.verify(bad, 1), Err(TokenError::Invalid), "{bad}");
        }
        // Tampered claims with the original signature.
        let good = s.sign(&claims(100));
        let parts: Vec<&str> = good.split('.').collect();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(10_000)).unwrap());
        let tampered = format!("{}.{forged_body}.{}", parts[0], parts[2]);
        assert_eq!(s.verify(&tampered, 1), Err(TokenError::Invalid));
        // `alg: none` and a token without a key id.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"x"}"#),
            parts[1]
        );
        assert_eq!(s.verify(&none, 1), Err(TokenError::Invalid));
        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(100),
            &EncodingKey::from_secret(KEY_A),
        )
        .unwrap();
        assert_eq!(s.verify(&no_kid, 1), Err(TokenError::Invalid));
        // A signed token whose subject is not a user id.
        let mut odd = serde_json::to_value(claims(100)).unwrap();
        odd["sub"] = "ana".into();
        let odd = jsonwebtoken::encode(
            &Header {
                kid: Some(key_id(KEY_A)),
                ..Header::new(Algorithm::HS256)
            },
            &odd,
            &EncodingKey::from_secret(KEY_A),
        )
        .unwrap();
        assert_eq!(s.verify(&odd, 1), Err(TokenError::Invalid));
    }

    #[test]
    fn key_files_parse_and_rotate_keeping_one_previous_key() {
        let text = format!(
            "# comment\n{}\n\n{}\n",
            std::str::from_utf8(KEY_A).unwrap(),
            std::str::from_utf8(KEY_B).unwrap()
        );
        assert_eq!(
            parse_key_file(&text).unwrap(),
            vec![KEY_A.to_vec(), KEY_B.to_vec()]
        );
        assert!(parse_key_file("# nothing\n").is_err());
        assert!(parse_key_file("short\n").unwrap_err().contains("line 1"));
        let (rotated, fresh) = rotated_key_file(&parse_key_file(&text).unwrap());
        assert_eq!(
            parse_key_file(&rotated).unwrap(),
            vec![fresh, KEY_A.to_vec()]
        );
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
