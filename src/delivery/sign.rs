//! Standard Webhooks signatures: `v1,` + base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the decoded bytes of a `whsec_`
//! secret. Written with `hmac` and `sha2` (already in the tree through sqlx) rather than the
//! specification's `standardwebhooks` crate, which would add `time`, a second `base64` and
//! its own SHA-256 for these few lines; the unit test pins the output to that crate's own
//! test vector.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

/// A signing key, decoded from `whsec_…` once. Its bytes never reach `Debug` output.
pub struct Signer {
    key: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

/// The secret is not `whsec_` + base64 (the configuration checks this first).
#[derive(Debug, thiserror::Error)]
#[error("the webhook secret is not `whsec_` followed by base64")]
pub struct BadSecret;

impl Signer {
    /// From a `whsec_` secret.
    pub fn new(secret: &SecretString) -> Result<Signer, BadSecret> {
        let encoded = secret.expose_secret().strip_prefix("whsec_").ok_or(BadSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| BadSecret)?;
        Ok(Signer { key: SecretBox::new(Box::new(key)) })
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret()).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// True when one of the space-separated `v1,` signatures in `header` is this key's
    /// signature of the message (compared in constant time): what a receiver checks.
    pub fn verify(&self, id: &str, timestamp: i64, body: &str, header: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret()).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|candidate| mac.clone().verify_slice(&candidate).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_reference_vector() {
        // From the `standardwebhooks` crate's own `test_sign`.
        let signer = Signer::new(&SecretString::from("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).unwrap();
        let body = r#"{"email":"test@example.com","username":"test_user"}"#;
        let signature = signer.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body);
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert!(signer.verify("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body, &format!("v1,bogus {signature}")));
        assert!(!signer.verify("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_554, body, &signature), "the timestamp is signed");
        assert!(!signer.verify("msg_other", 1_649_367_553, body, &signature), "the id is signed");
    }

    #[test]
    fn a_secret_without_the_prefix_is_refused_and_the_key_never_shows() {
        assert!(Signer::new(&SecretString::from("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).is_err());
        let signer = Signer::new(&SecretString::from("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).unwrap();
        assert_eq!(format!("{signer:?}"), "Signer([redacted])");
    }
}
