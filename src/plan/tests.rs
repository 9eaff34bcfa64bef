//! Unit tests of the pure diff.
