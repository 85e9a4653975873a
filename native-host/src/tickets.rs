//! Session tickets: how long they resume, and with whose keys.
//!
//! Without `session_ticket_keys` every instance makes its own AES-256-GCM keys and rotates
//! them every half `session_lifetime` (rustls' [`TicketRotator`] keeps the previous key and
//! advertises twice its period, so tickets are advertised, and open, for `session_lifetime`). With keys from files, instances that share
//! the files resume each other's sessions behind an L4 balancer; rotating is the operator's:
//! put the new key first, keep the old one second for a lifetime, then drop it (SIGHUP).
//!
//! A ticket is `key name (16) ‖ nonce (12) ‖ AES-256-GCM(session state)` with the name as
//! additional data. The key files are Envoy's format (80 bytes: name, HMAC secret, AES key), so
//! one file serves both hosts; their tickets are not interchangeable, each host reads its own.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use rustls::ticketer::TicketRotator;
use tlsgate_core::config::TicketKey;

const NAME_LEN: usize = 16;

/// The ticketer for an endpoint: the policy's keys, or this instance's own rotating ones.
pub fn ticketer(
    keys: &[TicketKey],
    lifetime: Duration,
) -> Result<Arc<dyn ProducesTickets>, String> {
    let lifetime = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    if keys.is_empty() {
        let rotator = TicketRotator::new((lifetime / 2).max(1), random_key)
            .map_err(|e| format!("cannot make session ticket keys: {e}"))?;
        return Ok(Arc::new(rotator));
    }
    let keys = keys
        .iter()
        .map(|k| {
            let (Some(name), Some(aes)) = (k.name(), k.aes_key()) else {
                return Err("the ticket keys were not loaded".to_owned());
            };
            Key::new(name, aes, lifetime)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Keys { keys, lifetime }))
}

/// A fresh random key, for [`TicketRotator`].
fn random_key() -> Result<Box<dyn ProducesTickets>, rustls::crypto::GetRandomFailed> {
    let mut material = [0u8; NAME_LEN + 32];
    SystemRandom::new()
        .fill(&mut material)
        .map_err(|_| rustls::crypto::GetRandomFailed)?;
    // The rotator sets the lifetime it advertises; the key's own is not consulted.
    Key::new(&material[..NAME_LEN], &material[NAME_LEN..], 0)
        .map(|k| Box::new(k) as Box<dyn ProducesTickets>)
        .map_err(|_| rustls::crypto::GetRandomFailed)
}

/// One AES-256-GCM ticket key and its name.
struct Key {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
    lifetime: u32,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name is public (it is in every ticket); the key is not printed.
        f.debug_struct("Key")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Key {
    fn new(name: &[u8], aes: &[u8], lifetime: u32) -> Result<Self, String> {
        let name: [u8; NAME_LEN] = name
            .try_into()
            .map_err(|_| "a ticket key name is 16 bytes".to_owned())?;
        let key = UnboundKey::new(&AES_256_GCM, aes)
            .map_err(|_| "a ticket key's AES key is 32 bytes".to_owned())?;
        Ok(Self {
            name,
            aead: LessSafeKey::new(key),
            lifetime,
        })
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.name),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// `None` for a ticket of another key, or one that does not authenticate.
    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (name, rest) = ticket.split_at_checked(NAME_LEN)?;
        if name != self.name {
            return None;
        }
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(&self.name), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

impl ProducesTickets for Key {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        self.lifetime
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(cipher)
    }
}

/// The policy's keys: the first seals, any opens.
#[derive(Debug)]
struct Keys {
    keys: Vec<Key>,
    lifetime: u32,
}

impl ProducesTickets for Keys {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        self.lifetime
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.first()?.seal(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.keys.iter().find_map(|k| k.open(cipher))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key(seed: u8) -> Key {
        Key::new(&[seed; 16], &[seed.wrapping_add(1); 32], 7200).unwrap()
    }

    #[test]
    fn a_ticket_opens_with_its_key_only() {
        let (a, b) = (key(1), key(2));
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(a.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.decrypt(&ticket), None);
        // Same name, another key (a forged or corrupted file): it does not authenticate.
        let impostor = Key::new(&[1; 16], &[9; 32], 7200).unwrap();
        assert_eq!(impostor.decrypt(&ticket), None);
        // Tampered or truncated tickets are refused, never a panic.
        let mut bad = ticket.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(a.decrypt(&bad), None);
        for len in 0..ticket.len() {
            assert_eq!(a.decrypt(&ticket[..len]), None);
        }
        // Two tickets of one state differ (fresh nonce each time).
        assert_ne!(a.encrypt(b"x"), a.encrypt(b"x"));
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Keys {
            keys: vec![key(1)],
            lifetime: 7200,
        };
        let rotated = Keys {
            keys: vec![key(2), key(1)],
            lifetime: 7200,
        };
        let before = old.encrypt(b"state").unwrap();
        assert_eq!(rotated.decrypt(&before).as_deref(), Some(&b"state"[..]));
        let after = rotated.encrypt(b"state").unwrap();
        assert_eq!(&after[..16], &[2; 16]);
        assert_eq!(old.decrypt(&after), None);
    }

    #[test]
    fn without_keys_each_instance_has_its_own() {
        let a = ticketer(&[], Duration::from_secs(3600)).unwrap();
        let b = ticketer(&[], Duration::from_secs(3600)).unwrap();
        assert_eq!(a.lifetime(), 3600);
        let ticket = a.encrypt(b"state").unwrap();
        assert!(a.decrypt(&ticket).is_some());
        assert!(b.decrypt(&ticket).is_none());
    }
}
