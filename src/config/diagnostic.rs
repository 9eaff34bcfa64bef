//! Located problems found in the fleet file or its templates, reported all at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem, with where it is and which station it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub station: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            station: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, location: Option<Location>) -> Self {
        if let Some(loc) = location {
            self.line = Some(loc.line);
            self.column = Some(loc.column);
        }
        self
    }

    pub fn station(mut self, id: impl Into<String>) -> Self {
        self.station = Some(id.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(station) = &self.station {
            write!(f, "station {station}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A line/column position in a source file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl Location {
    pub fn from_saphyr(loc: serde_saphyr::Location) -> Option<Self> {
        (loc.line() > 0).then(|| Location {
            line: loc.line(),
            column: loc.column(),
        })
    }
}

/// Every problem found in a fleet file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{} problem{} found:", n, if n == 1 { "" } else { "s" })?;
        for (i, d) in self.0.iter().enumerate() {
            if i + 1 < n {
                writeln!(f, "  {d}")?;
            } else {
                write!(f, "  {d}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
