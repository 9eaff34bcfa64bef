//! Unit tests of fleet-file parsing and validation.
