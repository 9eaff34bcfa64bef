//! The per-fleet endpoint file (`<certificates.dir>/endpoint.json`): the host stations should connect to, for device configuration to pick up.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name, beside the stations' key directories.
pub const ENDPOINT_FILE: &str = "endpoint.json";

/// What the endpoint file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFile {
    pub format_version: u32,
    pub fleet: String,
    pub account_id: String,
    pub region: String,
    /// The host stations connect to: the custom domain when configured, else `ats_endpoint`.
    pub endpoint: String,
    /// `custom_domain` or `ats`.
    pub source: String,
    pub port: u16,
    pub ats_endpoint: String,
}

impl EndpointFile {
    pub fn new(
        fleet: &str,
        account_id: &str,
        region: &str,
        custom_domain: Option<&str>,
        ats_endpoint: &str,
    ) -> Self {
        Self {
            format_version: 1,
            fleet: fleet.to_string(),
            account_id: account_id.to_string(),
            region: region.to_string(),
            endpoint: custom_domain.unwrap_or(ats_endpoint).to_string(),
            source: if custom_domain.is_some() {
                "custom_domain"
            } else {
                "ats"
            }
            .to_string(),
            port: 8883,
            ats_endpoint: ats_endpoint.to_string(),
        }
    }
}

pub fn path(certificates_dir: &Path) -> PathBuf {
    certificates_dir.join(ENDPOINT_FILE)
}

/// The file as it is, if it exists and parses.
pub fn read(certificates_dir: &Path) -> Option<EndpointFile> {
    let text = std::fs::read_to_string(path(certificates_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Write the file atomically (temp file, then rename); unchanged content is not rewritten.
pub fn write(certificates_dir: &Path, file: &EndpointFile) -> std::io::Result<bool> {
    if read(certificates_dir).as_ref() == Some(file) {
        return Ok(false);
    }
    std::fs::create_dir_all(certificates_dir)?;
    let target = path(certificates_dir);
    let tmp = certificates_dir.join(format!(".{ENDPOINT_FILE}.tmp{}", std::process::id()));
    let mut text = serde_json::to_string_pretty(file).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &target)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = EndpointFile::new("f", "1", "r", Some("mqtt.example.com"), "x-ats.iot");
        assert!(write(dir.path(), &f).unwrap());
        assert!(!write(dir.path(), &f).unwrap());
        let back = read(dir.path()).unwrap();
        assert_eq!(back.endpoint, "mqtt.example.com");
        assert_eq!(back.source, "custom_domain");
        let ats = EndpointFile::new("f", "1", "r", None, "x-ats.iot");
        assert_eq!(ats.endpoint, "x-ats.iot");
    }
}
