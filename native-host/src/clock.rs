//! The wall clock as core takes time: seconds since the Unix epoch (certificate validity, CRL
//! `nextUpdate`, OCSP `thisUpdate`/`nextUpdate`). A leaf: TLS setup, client OCSP checks and
//! stapling all read it, and none of them owns it.

use rustls::pki_types::UnixTime;

/// Seconds since the Unix epoch, as core takes time (certificate validity, CRL nextUpdate).
pub fn unix_now() -> i64 {
    i64::try_from(UnixTime::now().as_secs()).unwrap_or(i64::MAX)
}
