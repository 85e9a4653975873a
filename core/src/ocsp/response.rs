//! Parsing an OCSP response (RFC 6960 §4.2.1): the `BasicOCSPResponse` and its
//! `SingleResponse`s, before any judgement of them.

use super::*;
use crate::der::{generalized_time, Reader};

pub(super) struct Basic<'a> {
    pub(super) tbs: &'a [u8],
    /// The AlgorithmIdentifier (DER, SEQUENCE header included).
    pub(super) algorithm: &'a [u8],
    /// The BIT STRING's bits (no unused-bits byte).
    pub(super) signature: &'a [u8],
    pub(super) certs: Vec<&'a [u8]>,
    pub(super) responses: Vec<Single>,
}

pub(super) struct Single {
    pub(super) id: CertId,
    pub(super) status: Status,
    pub(super) this_update: i64,
    pub(super) next_update: Option<i64>,
}

pub(super) fn basic_response(der: &[u8]) -> Result<Basic<'_>, String> {
    let malformed = |what: &str| format!("malformed OCSP response: {what}");
    let mut outer = Reader::new(der)
        .sequence()
        .ok_or_else(|| malformed("not a SEQUENCE"))?;
    let status = outer
        .expect(0x0a)
        .ok_or_else(|| malformed("no responseStatus"))?;
    match status {
        [0] => {}
        [code] => {
            return Err(format!(
                "the responder answered {}",
                match code {
                    1 => "malformedRequest",
                    2 => "internalError",
                    3 => "tryLater",
                    5 => "sigRequired",
                    6 => "unauthorized",
                    _ => "an unknown status",
                }
            ))
        }
        _ => return Err(malformed("responseStatus")),
    }
    let mut bytes = outer
        .expect(0xa0)
        .and_then(|b| Reader::new(b).sequence())
        .ok_or_else(|| malformed("no responseBytes"))?;
    if bytes.expect(0x06) != Some(BASIC) {
        return Err("the response is not a basic OCSP response".into());
    }
    let basic = bytes.expect(0x04).ok_or_else(|| malformed("no response"))?;
    let mut basic = Reader::new(basic)
        .sequence()
        .ok_or_else(|| malformed("BasicOCSPResponse"))?;
    let tbs = basic
        .raw(0x30)
        .ok_or_else(|| malformed("tbsResponseData"))?;
    let algorithm = basic
        .raw(0x30)
        .ok_or_else(|| malformed("signatureAlgorithm"))?;
    let signature = match basic.expect(0x03) {
        Some([0, bits @ ..]) => bits,
        _ => return Err(malformed("signature")),
    };
    let mut certs = Vec::new();
    if let Some(list) = basic.expect(0xa0) {
        let mut list = Reader::new(list)
            .sequence()
            .ok_or_else(|| malformed("certs"))?;
        while let Some(cert) = list.raw(0x30) {
            certs.push(cert);
        }
    }
    let mut data = Reader::new(tbs)
        .sequence()
        .ok_or_else(|| malformed("tbsResponseData"))?;
    data.optional(0xa0); // version
    if data.optional(0xa1).is_none() && data.optional(0xa2).is_none() {
        return Err(malformed("responderID"));
    }
    data.expect(0x18).ok_or_else(|| malformed("producedAt"))?;
    let mut list = data
        .expect(0x30)
        .map(Reader::new)
        .ok_or_else(|| malformed("responses"))?;
    let mut responses = Vec::new();
    while let Some(single) = list.expect(0x30) {
        // An answer keyed by another hash cannot be about our request: skipped.
        if let Some(single) = single_response(single).ok_or_else(|| malformed("SingleResponse"))? {
            responses.push(single);
        }
    }
    Ok(Basic {
        tbs,
        algorithm,
        signature,
        certs,
        responses,
    })
}

/// `None`: malformed; `Some(None)`: a `CertID` by a hash other than SHA-1.
fn single_response(der: &[u8]) -> Option<Option<Single>> {
    let mut r = Reader::new(der);
    let mut id = Reader::new(r.expect(0x30)?);
    if id.expect(0x30)? != SHA1_ALG {
        return Some(None);
    }
    let issuer_name_hash = id.expect(0x04)?.try_into().ok()?;
    let issuer_key_hash = id.expect(0x04)?.try_into().ok()?;
    let serial = id.expect(0x02)?.to_vec();
    let status = match r.next()? {
        (0x80, _) => Status::Good,
        (0xa1, revoked) => Status::Revoked(generalized_time(Reader::new(revoked).expect(0x18)?)?),
        (0x82, _) => Status::Unknown,
        _ => return None,
    };
    let this_update = generalized_time(r.expect(0x18)?)?;
    let next_update = match r.optional(0xa0) {
        Some(t) => Some(generalized_time(Reader::new(t).expect(0x18)?)?),
        None => None,
    };
    Some(Some(Single {
        id: CertId {
            issuer_name_hash,
            issuer_key_hash,
            serial,
        },
        status,
        this_update,
        next_update,
    }))
}
