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
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LocalFiles {
    /// The directory exists.
    pub present: bool,
    /// SHA-256 of the certificate's DER (the AWS IoT certificate id), if the certificate file is there.
    pub certificate_id: Option<String>,
    pub has_private_key: bool,
    /// When the directory is missing: archived directories of this identity that hold a
    /// complete key pair, with their certificate ids (newest first).
    pub archived: Vec<(PathBuf, String)>,
}

/// Look at an identity's directory without changing anything.
pub fn inspect(dir: &Path) -> Result<LocalFiles, StoreError> {
    if !dir.exists() {
        return Ok(LocalFiles {
            archived: archived_of(dir)?,
            ..Default::default()
        });
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
        archived: Vec::new(),
    })
}

/// Complete key directories archived for the identity whose directory is `dir`.
fn archived_of(dir: &Path) -> Result<Vec<(PathBuf, String)>, StoreError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(Vec::new());
    };
    let base = parent.join(ARCHIVE_DIR).join(name);
    let Ok(entries) = fs::read_dir(&base) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let cert = path.join(CERTIFICATE_FILE);
        if !path.join(PRIVATE_KEY_FILE).exists() || !cert.exists() {
            continue;
        }
        let pem = fs::read_to_string(&cert).map_err(io_err(&cert))?;
        if let Some(id) = fingerprint_pem(&pem) {
            found.push((path, id));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(found)
}

/// Move an archived directory back into place (`dir` must not exist).
pub fn restore(from: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir.exists() {
        return Err(StoreError::Exists {
            path: dir.to_path_buf(),
        });
    }
    fs::rename(from, dir).map_err(io_err(dir))?;
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
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
    let staging = Staging::begin(dir, &cert.id)?;
    staging.write_private_key(&cert.private_key_pem)?;
    staging.write(PUBLIC_KEY_FILE, &cert.public_key_pem)?;
    staging.finish(&cert.certificate_pem)
}

/// An identity directory being assembled beside its final place (`.<id>.staging-<pid>-<tag>`),
/// renamed into place only when complete.
pub struct Staging {
    path: PathBuf,
    target: PathBuf,
}

/// Prefix-free marker in staging directory names.
const STAGING_MARK: &str = ".staging-";

impl Staging {
    /// Start a directory for `dir`, which must not exist yet.
    pub fn begin(dir: &Path, tag: &str) -> Result<Self, StoreError> {
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
        let path = parent.join(format!(
            ".{name}{STAGING_MARK}{}-{}",
            std::process::id(),
            tag.get(..12).unwrap_or(tag)
        ));
        if path.exists() {
            // Left by an earlier process with our pid: its key never reached its place.
            archive(&path)?;
        }
        create_private_dir_all(&path)?;
        Ok(Self {
            path,
            target: dir.to_path_buf(),
        })
    }

    /// The private key, first and alone: mode 0600, created new, fsynced.
    pub fn write_private_key(&self, key: &crate::cloud::Secret) -> Result<(), StoreError> {
        write_new(&self.path.join(PRIVATE_KEY_FILE), key.expose(), 0o600)?;
        sync_dir(&self.path)
    }

    pub fn write(&self, file: &str, content: &str) -> Result<(), StoreError> {
        write_new(&self.path.join(file), content, 0o644)
    }

    /// Add the certificate and the root CA, then move the directory into place.
    pub fn finish(self, certificate_pem: &str) -> Result<(), StoreError> {
        self.write(CERTIFICATE_FILE, certificate_pem)?;
        self.write(ROOT_CA_FILE, AMAZON_ROOT_CA_1)?;
        sync_dir(&self.path)?;
        // rename(2) fails on a non-empty target: an identity directory is never replaced.
        fs::rename(&self.path, &self.target).map_err(|e| {
            if e.kind() == io::ErrorKind::DirectoryNotEmpty
                || e.kind() == io::ErrorKind::AlreadyExists
            {
                StoreError::Exists {
                    path: self.target.clone(),
                }
            } else {
                StoreError::Io {
                    path: self.target.clone(),
                    source: e,
                }
            }
        })?;
        sync_dir(self.target.parent().unwrap_or(Path::new(".")))
    }
}

/// Move staging directories left by interrupted runs into the archive (they hold keys of
/// certificates that were never attached or activated; keys are never deleted).
pub fn archive_leftovers(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut moved = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(moved),
        Err(e) => {
            return Err(StoreError::Io {
                path: root.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(io_err(root))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && name.contains(STAGING_MARK) {
            moved.push(archive(&entry.path())?);
        }
    }
    Ok(moved)
}

/// Move an identity's directory to `<root>/.archive/<id>/<unix-time>`; returns the new place.
pub fn archive(dir: &Path) -> Result<PathBuf, StoreError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let full = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // `.st000.staging-…` archives under `st000` too.
    let name = match full.split_once(STAGING_MARK) {
        Some((id, _)) => id.trim_start_matches('.').to_string(),
        None => full,
    };
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
    fn leftover_staging_is_archived_not_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = Staging::begin(&tmp.path().join("st000"), "abc").unwrap();
        staging
            .write_private_key(&crate::cloud::Secret::new("k".into()))
            .unwrap();
        drop(staging); // the process "crashed" before finish
        let moved = archive_leftovers(tmp.path()).unwrap();
        assert_eq!(moved.len(), 1);
        assert!(moved[0].starts_with(tmp.path().join(ARCHIVE_DIR).join("st000")));
        assert!(moved[0].join(PRIVATE_KEY_FILE).exists());
        assert!(!tmp.path().join("st000").exists());
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
