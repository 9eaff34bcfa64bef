//! Local certificate and key files: written once, atomically, with owner-only permissions; archived, never deleted.
//!
//! Layout per identity: `<dir>/<id>/certificate.pem.crt`, `private.pem.key` (0600),
//! `public.pem.key`, `AmazonRootCA1.pem`; the directory is 0700. A new identity directory
//! is assembled in a staging directory beside it and renamed into place, so `<dir>/<id>`
//! either holds every file or does not exist, and an existing key is never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cloud::NewCertificate;

pub const CERTIFICATE_FILE: &str = "certificate.pem.crt";
pub const PRIVATE_KEY_FILE: &str = "private.pem.key";
pub const PUBLIC_KEY_FILE: &str = "public.pem.key";
pub const ROOT_CA_FILE: &str = "AmazonRootCA1.pem";
/// Archived identity directories go below this folder of the certificates directory.
pub const ARCHIVE_DIR: &str = ".archive";

/// Amazon Root CA 1, which signs AWS IoT's ATS endpoints (shipped with the tool).
pub const AMAZON_ROOT_CA_1: &str = include_str!("../assets/AmazonRootCA1.pem");

/// Errors from the local certificate store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a PEM certificate")]
    NotPem { path: PathBuf },
    #[error("{path} already exists; provision never overwrites key material (move it away, or archive the station's directory)")]
    Exists { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What is on disk for one identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalFiles {
    /// The directory exists.
    pub present: bool,
    /// SHA-256 of the certificate's DER (the AWS IoT certificate id), if the certificate file is there.
    pub certificate_id: Option<String>,
    pub has_private_key: bool,
}

/// Look at an identity's directory without changing anything.
pub fn inspect(dir: &Path) -> Result<LocalFiles, StoreError> {
    if !dir.exists() {
        return Ok(LocalFiles::default());
    }
    let cert_path = dir.join(CERTIFICATE_FILE);
    let certificate_id = if cert_path.exists() {
        let pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        Some(fingerprint_pem(&pem).ok_or(StoreError::NotPem { path: cert_path })?)
    } else {
        None
    };
    Ok(LocalFiles {
        present: true,
        certificate_id,
        has_private_key: dir.join(PRIVATE_KEY_FILE).exists(),
    })
}

/// The AWS IoT certificate id of a PEM certificate: SHA-256 of its DER bytes, lowercase hex.
pub fn fingerprint_pem(pem: &str) -> Option<String> {
    let der = pem_to_der(pem)?;
    Some(hex::encode(Sha256::digest(&der)))
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}

/// Create the certificates directory if needed (0700) and prove it is writable.
/// Run before the first API call of an apply, so a bad directory fails early.
pub fn ensure_writable(root: &Path) -> Result<(), StoreError> {
    create_private_dir_all(root)?;
    let probe = root.join(format!(".provision-write-test-{}", std::process::id()));
    File::create(&probe).map_err(io_err(root))?;
    fs::remove_file(&probe).map_err(io_err(&probe))?;
    Ok(())
}

fn create_private_dir_all(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err(dir))
}

/// Write a new certificate's files into `dir` (which must not exist yet), atomically.
pub fn save_new(dir: &Path, cert: &NewCertificate) -> Result<(), StoreError> {
    if dir.exists() {
        return Err(StoreError::Exists {
            path: dir.to_path_buf(),
        });
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    create_private_dir_all(parent)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let staging = parent.join(format!(
        ".{name}.staging-{}-{}",
        std::process::id(),
        cert.id.get(..12).unwrap_or(&cert.id)
    ));
    if staging.exists() {
        // Left by an earlier crash of this very process id: it never held a renamed key.
        fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    }
    create_private_dir_all(&staging)?;
    write_new(
        &staging.join(PRIVATE_KEY_FILE),
        cert.private_key_pem.expose(),
        0o600,
    )?;
    write_new(
        &staging.join(CERTIFICATE_FILE),
        &cert.certificate_pem,
        0o644,
    )?;
    write_new(&staging.join(PUBLIC_KEY_FILE), &cert.public_key_pem, 0o644)?;
    write_new(&staging.join(ROOT_CA_FILE), AMAZON_ROOT_CA_1, 0o644)?;
    sync_dir(&staging)?;
    // rename(2) fails on a non-empty target: an identity directory is never replaced.
    fs::rename(&staging, dir).map_err(|e| {
        if e.kind() == io::ErrorKind::DirectoryNotEmpty || e.kind() == io::ErrorKind::AlreadyExists
        {
            StoreError::Exists {
                path: dir.to_path_buf(),
            }
        } else {
            StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            }
        }
    })?;
    sync_dir(parent)?;
    Ok(())
}

/// Move an identity's directory to `<root>/.archive/<id>/<unix-time>`; returns the new place.
pub fn archive(dir: &Path) -> Result<PathBuf, StoreError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = parent.join(ARCHIVE_DIR).join(&name);
    create_private_dir_all(&base)?;
    let mut target = base.join(stamp.to_string());
    let mut n = 1;
    while target.exists() {
        target = base.join(format!("{stamp}-{n}"));
        n += 1;
    }
    fs::rename(dir, &target).map_err(io_err(dir))?;
    sync_dir(parent)?;
    Ok(target)
}

/// Create a file that must not exist, write it fully and fsync it.
fn write_new(path: &Path, content: &str, mode: u32) -> Result<(), StoreError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            StoreError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            StoreError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    f.write_all(content.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Secret;

    fn new_cert() -> NewCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = cert.pem();
        NewCertificate {
            id: fingerprint_pem(&pem).unwrap(),
            arn: "arn:aws:iot:eu-west-1:1:cert/x".into(),
            certificate_pem: pem,
            public_key_pem: key.public_key_pem(),
            private_key_pem: Secret::new(key.serialize_pem()),
        }
    }

    #[test]
    fn root_ca_is_amazon_root_ca_1() {
        assert_eq!(
            fingerprint_pem(AMAZON_ROOT_CA_1).unwrap(),
            "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
        );
    }

    #[test]
    fn saves_once_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs").join("st000");
        let cert = new_cert();
        save_new(&dir, &cert).unwrap();
        let files = inspect(&dir).unwrap();
        assert_eq!(files.certificate_id.as_deref(), Some(cert.id.as_str()));
        assert!(files.has_private_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join(PRIVATE_KEY_FILE)), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let key_before = fs::read_to_string(dir.join(PRIVATE_KEY_FILE)).unwrap();
        // A second save never overwrites.
        let err = save_new(&dir, &new_cert()).unwrap_err();
        assert!(matches!(err, StoreError::Exists { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(dir.join(PRIVATE_KEY_FILE)).unwrap(),
            key_before
        );
        // No staging directory is left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn archive_moves_and_keeps() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("st000");
        save_new(&dir, &new_cert()).unwrap();
        let moved = archive(&dir).unwrap();
        assert!(!dir.exists());
        assert!(moved.join(PRIVATE_KEY_FILE).exists());
        assert!(moved.starts_with(tmp.path().join(ARCHIVE_DIR)));
    }

    #[test]
    fn unwritable_dir_fails_early() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        assert!(ensure_writable(&file.join("certs")).is_err());
    }
}
