//! The simulated disk and its fault model (issue 4).
