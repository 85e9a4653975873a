//! Signature algorithms for webpki in pure Rust (RustCrypto), for the builds where ring and
//! aws-lc-rs do not go (the browser playground, the proxy-wasm filter): the same algorithms
//! rustls' providers give the native host (ECDSA P-256/P-384, RSA PKCS#1 v1.5 and PSS,
//! Ed25519), verified by different code with the same results.

use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm,
};
use sha2::{Digest, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use signature::Verifier;

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(message).to_vec(),
            Self::Sha384 => Sha384::digest(message).to_vec(),
            Self::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

#[derive(Debug)]
struct Ecdsa {
    curve: Curve,
    hash: Hash,
    public_key: AlgorithmIdentifier,
    signature: AlgorithmIdentifier,
}

#[derive(Debug, Clone, Copy)]
enum Curve {
    P256,
    P384,
}

impl SignatureVerificationAlgorithm for Ecdsa {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let digest = self.hash.digest(message);
        match self.curve {
            Curve::P256 => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let sig =
                    p256::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
                key.verify_prehash(&digest, &sig)
                    .map_err(|_| InvalidSignature)
            }
            Curve::P384 => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let sig =
                    p384::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
                key.verify_prehash(&digest, &sig)
                    .map_err(|_| InvalidSignature)
            }
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.public_key
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature
    }
}

#[derive(Debug)]
struct Rsa {
    hash: Hash,
    pss: bool,
    signature: AlgorithmIdentifier,
}

impl SignatureVerificationAlgorithm for Rsa {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        let key = rsa::RsaPublicKey::from_pkcs1_der(public_key).map_err(|_| InvalidSignature)?;
        // webpki's floor: 2048-bit keys.
        if rsa::traits::PublicKeyParts::size(&key) < 256 {
            return Err(InvalidSignature);
        }
        macro_rules! verify {
            ($scheme:ident, $hash:ty) => {{
                let verifier = rsa::$scheme::VerifyingKey::<$hash>::new(key);
                let sig =
                    rsa::$scheme::Signature::try_from(signature).map_err(|_| InvalidSignature)?;
                verifier.verify(message, &sig).map_err(|_| InvalidSignature)
            }};
        }
        match (self.pss, self.hash) {
            (false, Hash::Sha256) => verify!(pkcs1v15, Sha256),
            (false, Hash::Sha384) => verify!(pkcs1v15, Sha384),
            (false, Hash::Sha512) => verify!(pkcs1v15, Sha512),
            (true, Hash::Sha256) => verify!(pss, Sha256),
            (true, Hash::Sha384) => verify!(pss, Sha384),
            (true, Hash::Sha512) => verify!(pss, Sha512),
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature
    }
}

#[derive(Debug)]
struct Ed25519;

impl SignatureVerificationAlgorithm for Ed25519 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key: [u8; 32] = public_key.try_into().map_err(|_| InvalidSignature)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| InvalidSignature)?;
        let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|_| InvalidSignature)?;
        key.verify_strict(message, &sig)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }
}

static ECDSA_P256_SHA256: Ecdsa = Ecdsa {
    curve: Curve::P256,
    hash: Hash::Sha256,
    public_key: alg_id::ECDSA_P256,
    signature: alg_id::ECDSA_SHA256,
};
static ECDSA_P256_SHA384: Ecdsa = Ecdsa {
    curve: Curve::P256,
    hash: Hash::Sha384,
    public_key: alg_id::ECDSA_P256,
    signature: alg_id::ECDSA_SHA384,
};
static ECDSA_P384_SHA256: Ecdsa = Ecdsa {
    curve: Curve::P384,
    hash: Hash::Sha256,
    public_key: alg_id::ECDSA_P384,
    signature: alg_id::ECDSA_SHA256,
};
static ECDSA_P384_SHA384: Ecdsa = Ecdsa {
    curve: Curve::P384,
    hash: Hash::Sha384,
    public_key: alg_id::ECDSA_P384,
    signature: alg_id::ECDSA_SHA384,
};
static RSA_PKCS1_SHA256: Rsa = Rsa {
    hash: Hash::Sha256,
    pss: false,
    signature: alg_id::RSA_PKCS1_SHA256,
};
static RSA_PKCS1_SHA384: Rsa = Rsa {
    hash: Hash::Sha384,
    pss: false,
    signature: alg_id::RSA_PKCS1_SHA384,
};
static RSA_PKCS1_SHA512: Rsa = Rsa {
    hash: Hash::Sha512,
    pss: false,
    signature: alg_id::RSA_PKCS1_SHA512,
};
static RSA_PSS_SHA256: Rsa = Rsa {
    hash: Hash::Sha256,
    pss: true,
    signature: alg_id::RSA_PSS_SHA256,
};
static RSA_PSS_SHA384: Rsa = Rsa {
    hash: Hash::Sha384,
    pss: true,
    signature: alg_id::RSA_PSS_SHA384,
};
static RSA_PSS_SHA512: Rsa = Rsa {
    hash: Hash::Sha512,
    pss: true,
    signature: alg_id::RSA_PSS_SHA512,
};
static ED25519: Ed25519 = Ed25519;

/// Every algorithm, as webpki takes them.
pub static ALL: &[&dyn SignatureVerificationAlgorithm] = &[
    &ECDSA_P256_SHA256,
    &ECDSA_P256_SHA384,
    &ECDSA_P384_SHA256,
    &ECDSA_P384_SHA384,
    &RSA_PKCS1_SHA256,
    &RSA_PKCS1_SHA384,
    &RSA_PKCS1_SHA512,
    &RSA_PSS_SHA256,
    &RSA_PSS_SHA384,
    &RSA_PSS_SHA512,
    &ED25519,
];
