//! TLS for `verify`: the trust anchor (Amazon Root CA 1 or `--ca-file`) and each identity's client certificate and key, as rustls client configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::certstore::{self, AMAZON_ROOT_CA_1};

/// ALPN protocol AWS IoT expects for MQTT with X.509 client certificates on port 443.
pub const ALPN_MQTT_CA: &[u8] = b"x-amzn-mqtt-ca";

/// Why TLS material could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path} is missing")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{key} does not belong to {certificate} (the private key does not match the certificate's public key)")]
    KeyMismatch { key: PathBuf, certificate: PathBuf },
    #[error("the certificate {certificate} or key {key} is not usable: {message}")]
    Unusable {
        certificate: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("no usable CA certificate in {path}: {message}")]
    BadCa { path: PathBuf, message: String },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TlsSetupError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            TlsSetupError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        }
    })
}

fn pem_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The trust anchors the server is checked against: the CA file, else Amazon Root CA 1.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let (pem, path) = match ca_file {
        Some(p) => (read(p)?, p.to_path_buf()),
        None => (
            AMAZON_ROOT_CA_1.as_bytes().to_vec(),
            PathBuf::from("Amazon Root CA 1 (built in)"),
        ),
    };
    let mut store = RootCertStore::empty();
    for cert in pem_certs(&pem, &path)? {
        store.add(cert).map_err(|e| TlsSetupError::BadCa {
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(store)
}

/// An identity's files in `certificates.dir/<id>/`.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl IdentityFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            certificate: dir.join(certstore::CERTIFICATE_FILE),
            key: dir.join(certstore::PRIVATE_KEY_FILE),
        }
    }
}

/// A client configuration presenting this identity's certificate, with ALPN when asked.
pub fn client_config(
    roots: &RootCertStore,
    files: &IdentityFiles,
    alpn: bool,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let cert_pem = read(&files.certificate)?;
    let key_pem = read(&files.key)?;
    let chain = pem_certs(&cert_pem, &files.certificate)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsSetupError::Read {
            path: files.key.clone(),
            message: e.to_string(),
        })?
        .ok_or_else(|| TlsSetupError::NoKey {
            path: files.key.clone(),
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Unusable {
            certificate: files.certificate.clone(),
            key: files.key.clone(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsSetupError::KeyMismatch {
                key: files.key.clone(),
                certificate: files.certificate.clone(),
            },
            other => TlsSetupError::Unusable {
                certificate: files.certificate.clone(),
                key: files.key.clone(),
                message: other.to_string(),
            },
        })?;
    if alpn {
        config.alpn_protocols = vec![ALPN_MQTT_CA.to_vec()];
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(
        dir: &Path,
        cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
        key_pem: &str,
    ) -> IdentityFiles {
        std::fs::write(dir.join(certstore::CERTIFICATE_FILE), cert.cert.pem()).unwrap();
        std::fs::write(dir.join(certstore::PRIVATE_KEY_FILE), key_pem).unwrap();
        IdentityFiles::in_dir(dir)
    }

    #[test]
    fn amazon_root_ca_1_is_the_default_anchor() {
        assert_eq!(root_store(None).unwrap().len(), 1);
    }

    #[test]
    fn matching_key_loads_with_alpn_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["st000".into()]).unwrap();
        let files = identity(dir.path(), &c, &c.signing_key.serialize_pem());
        let roots = root_store(None).unwrap();
        let plain = client_config(&roots, &files, false).unwrap();
        assert!(plain.alpn_protocols.is_empty());
        let alpn = client_config(&roots, &files, true).unwrap();
        assert_eq!(alpn.alpn_protocols, vec![b"x-amzn-mqtt-ca".to_vec()]);
    }

    #[test]
    fn wrong_or_missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["st000".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let files = identity(dir.path(), &c, &other.serialize_pem());
        let roots = root_store(None).unwrap();
        let err = client_config(&roots, &files, false).unwrap_err();
        assert!(matches!(err, TlsSetupError::KeyMismatch { .. }), "{err}");
        std::fs::remove_file(&files.key).unwrap();
        let err = client_config(&roots, &files, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is missing", files.key.display())
        );
    }
}
