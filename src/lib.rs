//! Umbrella package: see `tests/` for the integration tests of the whole workspace.
