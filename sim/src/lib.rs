//! The deterministic simulator (issue 5).
