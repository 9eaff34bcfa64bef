//! Unit tests of template rendering.
