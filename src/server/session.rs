//! Access tokens for Airflow 3's clients, which log in with `POST
//! /auth/token` (`{"username", "password"}`, the API's basic credentials)
//! and then send `Authorization: Bearer <token>`.
//!
//! A token is `<expiry>.<HMAC-SHA256 of it>` under a key drawn when the
//! server starts: nothing is stored, a token cannot be forged or extended,
//! and all die with the process (a client logs in again on a 401).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a token is good for (Airflow's default).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The key tokens are signed with.
pub struct Sessions {
    key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions { key: *** }")
    }
}

impl Sessions {
    /// A fresh key from the operating system's random source.
    pub fn new() -> std::io::Result<Sessions> {
        let mut key = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        Ok(Sessions { key })
    }

    /// A token good until `now` + [`TOKEN_LIFETIME`].
    pub fn issue(&self, now: SystemTime) -> String {
        let expiry = seconds(now + TOKEN_LIFETIME);
        format!(
            "{expiry}.{}",
            hex::encode(crate::hmac::hmac_sha256(
                &self.key,
                expiry.to_string().as_bytes()
            ))
        )
    }

    /// Whether `token` was issued by this server and has not expired.
    pub fn accepts(&self, token: &str, now: SystemTime) -> bool {
        let Some((expiry, signature)) = token.split_once('.') else {
            return false;
        };
        let Ok(signature) = hex::decode(signature) else {
            return false;
        };
        let expected = crate::hmac::hmac_sha256(&self.key, expiry.as_bytes());
        let genuine = signature.len() == expected.len()
            && signature
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        genuine
            && expiry
                .parse::<u64>()
                .is_ok_and(|expiry| expiry > seconds(now))
    }
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_good_until_they_expire_and_cannot_be_forged() {
        let sessions = Sessions::new().unwrap();
        let now = SystemTime::now();
        let token = sessions.issue(now);
        assert!(sessions.accepts(&token, now));
        assert!(!sessions.accepts(&token, now + TOKEN_LIFETIME));
        let (expiry, signature) = token.split_once('.').unwrap();
        let extended = format!("{}.{signature}", expiry.parse::<u64>().unwrap() + 3600);
        assert!(!sessions.accepts(&extended, now));
        assert!(
            !Sessions::new().unwrap().accepts(&token, now),
            "another server's key"
        );
        for bad in ["", ".", "1.zz", "x.00", &format!("{expiry}.")] {
            assert!(!sessions.accepts(bad, now), "{bad:?}");
        }
    }
}
