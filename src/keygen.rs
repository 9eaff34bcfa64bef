//! Local key pairs and certificate signing requests (CSR mode): the private key never leaves the machine.

use serde::{Deserialize, Serialize};

use crate::cloud::Secret;

/// How a station's key pair comes to be.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum KeyMethod {
    /// AWS IoT generates the key pair (CreateKeysAndCertificate) and returns the private key once.
    #[default]
    Aws,
    /// The key pair is generated here; AWS IoT signs a CSR (CreateCertificateFromCsr).
    Csr { algorithm: KeyAlgorithm },
}

/// Key algorithms for CSR mode (AWS IoT accepts RSA ≥ 2048 and EC P-256/P-384/P-521).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcP256,
    Rsa2048,
}

impl KeyAlgorithm {
    pub fn label(self) -> &'static str {
        match self {
            KeyAlgorithm::EcP256 => "EC P-256",
            KeyAlgorithm::Rsa2048 => "RSA 2048",
        }
    }
}

/// Errors generating keys or requests.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("generating a {0} key pair failed: {1}")]
    Generate(&'static str, String),
    #[error("building the certificate signing request failed: {0}")]
    Request(String),
}

/// A locally generated key pair.
pub struct LocalKey {
    key: rcgen::KeyPair,
}

impl LocalKey {
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeygenError> {
        let key = match algorithm {
            KeyAlgorithm::EcP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::Rsa2048 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        }
        .map_err(|e| KeygenError::Generate(algorithm.label(), e.to_string()))?;
        Ok(Self { key })
    }

    pub fn private_pem(&self) -> Secret {
        Secret::new(self.key.serialize_pem())
    }

    pub fn public_pem(&self) -> String {
        self.key.public_key_pem()
    }

    /// A CSR for this key, subject CN = the station id.
    pub fn request(&self, common_name: &str) -> Result<String, KeygenError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| KeygenError::Request(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params
            .serialize_request(&self.key)
            .and_then(|r| r.pem())
            .map_err(|e| KeygenError::Request(e.to_string()))
    }

    /// Whether a PEM certificate certifies this key's public key.
    pub fn is_certified_by(&self, certificate_pem: &str) -> bool {
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()) else {
            return false;
        };
        let Ok(cert) = pem.parse_x509() else {
            return false;
        };
        cert.tbs_certificate.subject_pki.raw
            == rcgen::PublicKeyData::subject_public_key_info(&self.key).as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_round_trip_and_key_check() {
        for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa2048] {
            let key = LocalKey::generate(alg).unwrap();
            let csr = key.request("st000").unwrap();
            assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
            let params = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let issuer = rcgen::Issuer::new(rcgen::CertificateParams::new(vec![]).unwrap(), ca_key);
            let cert = params.signed_by(&issuer).unwrap().pem();
            assert!(key.is_certified_by(&cert), "{alg:?}");
            let other = LocalKey::generate(alg).unwrap();
            assert!(!other.is_certified_by(&cert), "{alg:?}");
            assert!(key.private_pem().expose().contains("PRIVATE KEY"));
        }
    }
}
