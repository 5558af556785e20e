//! Seed files: one small text file per seed that once found a bug, replayed forever.
//!
//! ```text
//! seed = 1234
//! ops = 800
//! faults = crash,io
//! found = acknowledged writes lost when ...
//! date = 2026-11-25
//! ```
//!
//! `seed` is required; `ops` defaults to 1000, `faults` to `all`, and `schedule` (the
//! schedule generation, see [`crate::config`]) to 1, the generation of every file written
//! before generations existed. Other keys are notes.

use crate::config::{FaultMask, RunConfig};
use std::path::{Path, PathBuf};

/// A parsed seed file.
#[derive(Debug, Clone)]
pub struct SeedFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The seed.
    pub seed: u64,
    /// How to run it.
    pub config: RunConfig,
    /// What it found, as written.
    pub found: String,
}

/// Parses one seed file's text.
pub fn parse(path: &Path, text: &str) -> Result<SeedFile, String> {
    let mut seed = None;
    let mut config = RunConfig {
        schedule: 1,
        ..RunConfig::default()
    };
    let mut found = String::new();
    let fields =
        omendb_simcore::parse_seed_file(text).map_err(|e| format!("{}: {e}", path.display()))?;
    for (key, value) in &fields {
        let bad = |what: &str| format!("{}: bad {what} {value:?}", path.display());
        match key.as_str() {
            "seed" => seed = Some(value.parse::<u64>().map_err(|_| bad("seed"))?),
            "ops" => config.ops = value.parse().map_err(|_| bad("ops"))?,
            "faults" => {
                config.faults =
                    FaultMask::parse(value).map_err(|e| format!("{}: {e}", bad("faults")))?
            }
            "schedule" => {
                config.schedule = RunConfig::parse_schedule(value)
                    .map_err(|e| format!("{}: {e}", bad("schedule")))?
            }
            "found" => found.clone_from(value),
            _ => {}
        }
    }
    let seed = seed.ok_or_else(|| format!("{}: no `seed = ...` line", path.display()))?;
    Ok(SeedFile {
        path: path.to_path_buf(),
        seed,
        config,
        found,
    })
}

/// Every `*.seed` file in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<SeedFile>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seed"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            parse(path, &text)
        })
        .collect()
}

/// The text of a seed file for `seed` run with `config`.
pub fn render(seed: u64, config: &RunConfig, found: &str, date: &str) -> String {
    format!(
        "seed = {seed}\nops = {}\nfaults = {}\nschedule = {}\nfound = {found}\ndate = {date}\n",
        config.ops, config.faults, config.schedule
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SCHEDULE_CURRENT;

    #[test]
    fn a_seed_file_without_a_generation_replays_generation_one() {
        let path = Path::new("x.seed");
        let old = parse(path, "seed = 5\nops = 10\n").unwrap();
        assert_eq!(old.config.schedule, 1);
        let text = render(5, &RunConfig::default(), "found", "2026-12-02");
        let new = parse(path, &text).unwrap();
        assert_eq!(new.config, RunConfig::default());
        assert_eq!(new.config.schedule, SCHEDULE_CURRENT);
        assert!(parse(path, "seed = 5\nschedule = 99\n").is_err());
        assert_eq!(
            parse(path, "seed = 5\nschedule = 4\n")
                .unwrap()
                .config
                .schedule,
            4
        );
        assert!(parse(path, "seed = 5\nschedule = 0\n").is_err());
    }
}
