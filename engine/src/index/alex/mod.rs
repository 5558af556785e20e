//! The ALEX learned index (issue 3).
