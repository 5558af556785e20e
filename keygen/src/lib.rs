//! `omendb-keygen`: the keys and random streams that OmenDB's benchmarks (bench/), its
//! simulator (sim/) and its tests draw, written once, with no dependencies so that the
//! simulator and the engine's tests can use them without building what the benchmarks need.
//!
//! - [`splitmix`]: the SplitMix64 generator and hash, the only copy in the tree.
//! - [`dist`]: key distributions, one meaning per name ([`Dist`] lists the names and what
//!   each means; `zipf` is YCSB's scrambled Zipfian, never a log-uniform or Pareto shape,
//!   which have names of their own).
//! - [`duration`]: the duration syntax of the benchmarks' and the simulator's command lines.
//!
//! Nothing here reads a clock or the OS: every value is a function of its arguments.

pub mod dist;
pub mod duration;
pub mod splitmix;

pub use dist::{log_uniform, pareto, skewed_low, Dist, KeyOrder, Permutation, Zipf, EDGE_KEYS};
pub use duration::parse_duration;
pub use splitmix::{below, mix64, splitmix64, unit_f64, SplitMix64};
