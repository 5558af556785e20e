//! The command line every target gets: parse, run, report, exit code.
//!
//! ```text
//! run --seed S             one seed (`run S` too)
//! replay --seed S          one seed, the target printing its whole trace (`replay S` too)
//! sweep --seeds A..B [--shard I/N] [--jobs N]
//! chaos [--duration D] [--start S] [--jobs N]     fresh seeds until the time is up
//! determinism [--seeds A..B]                       each seed twice, the same trace hash
//! shrink --seed S          the same failure with fewer steps (targets that can shrink)
//! --json                   one JSON object as the last line (every command)
//! ```
//!
//! A target's binary is a [`Frontend`]: it names its own flags (OmenDB's `--ops`,
//! `--faults`; SQLite's `--synchronous`), builds its [`Target`] from them, and prints its
//! outcomes and summaries in its own shape; [`main`] does the rest. Exit code 0 when every
//! run passed, 1 when any failed, 2 on bad arguments (with the usage).
//!
//! Values may follow their flag (`--seeds 0..10`) or be joined to it (`--seeds=0..10`).

use crate::{Outcome, Ran, Target};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run one seed.
    Run { seed: u64 },
    /// Run one seed, printing its whole trace.
    Replay { seed: u64 },
    /// Run `from..to` (or the seeds of one shard of it, `seed % count == index`).
    Sweep {
        from: u64,
        to: u64,
        shard: Option<(u64, u64)>,
        jobs: Option<usize>,
    },
    /// Run fresh seeds from `start` until `duration` has passed.
    Chaos {
        duration: Duration,
        start: u64,
        jobs: Option<usize>,
    },
    /// Run each seed of `from..to` twice and compare trace hashes.
    Determinism { from: u64, to: u64 },
    /// Find a smaller run of a failing seed that fails the same check.
    Shrink { seed: u64 },
}

/// The first seed of a chaos run without `--start`.
pub const CHAOS_START_DEFAULT: u64 = 1_000_000;
/// A chaos run's length without `--duration`.
pub const CHAOS_DURATION_DEFAULT: Duration = Duration::from_secs(60);
/// The seeds of `determinism` without `--seeds`.
pub const DETERMINISM_SEEDS_DEFAULT: (u64, u64) = (0, 20);
/// Seeds per chaos batch (each batch a deterministic sweep).
pub const CHAOS_BATCH_SEEDS: u64 = 64;

/// A flag of a target's own.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Its name without the dashes (`ops` for `--ops`).
    pub name: &'static str,
    /// The name of its value in the usage (`N`), or `None` for a switch.
    pub value: Option<&'static str>,
    /// One line on what it does.
    pub help: &'static str,
}

/// The target's own flags as given, in order.
#[derive(Debug, Clone, Default)]
pub struct Options {
    given: Vec<(&'static str, Option<String>)>,
}

impl Options {
    /// The value of `--name` (the last one given), if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| *n == name)
    }
}

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    /// `--json`: one JSON object as the last line.
    pub json: bool,
    /// The target's own flags.
    pub options: Options,
}

/// What [`parse`] found.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// `-h`, `--help` or `help`: print the usage.
    Help,
    Invocation(Invocation),
}

/// A summary of many runs, built up run by run and batch by batch.
pub trait Tally<O>: Default {
    /// Adds one run (runs come in seed order).
    fn add_run(&mut self, ran: Ran<O>);
    /// Adds another summary (a chaos run's next batch).
    fn merge(&mut self, other: Self);
    /// Records the wall time the runs took, seconds.
    fn finish(&mut self, _elapsed_s: f64) {}
    /// Seeds run.
    fn seeds(&self) -> u64;
    /// The failing runs, in seed order.
    fn failed(&self) -> Vec<&O>;

    /// The summary of `runs`.
    fn of_runs(runs: Vec<Ran<O>>) -> Self {
        let mut tally = Self::default();
        for ran in runs {
            tally.add_run(ran);
        }
        tally
    }
}

/// A summary for a target without one of its own: seeds run, the failing outcomes, time.
#[derive(Debug, Clone)]
pub struct Totals<O> {
    pub seeds: u64,
    /// The failing outcomes, in seed order.
    pub failed: Vec<O>,
    /// Time spent inside runs, summed over threads, seconds.
    pub busy_s: f64,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

impl<O> Default for Totals<O> {
    fn default() -> Self {
        Totals {
            seeds: 0,
            failed: Vec::new(),
            busy_s: 0.0,
            elapsed_s: 0.0,
        }
    }
}

impl<O: Outcome> Tally<O> for Totals<O> {
    fn add_run(&mut self, ran: Ran<O>) {
        self.seeds += 1;
        self.busy_s += ran.busy_s;
        if !ran.outcome.passed() {
            self.failed.push(ran.outcome);
        }
    }

    fn merge(&mut self, other: Self) {
        self.seeds += other.seeds;
        self.busy_s += other.busy_s;
        self.failed.extend(other.failed);
    }

    fn finish(&mut self, elapsed_s: f64) {
        self.elapsed_s = elapsed_s;
    }

    fn seeds(&self) -> u64 {
        self.seeds
    }

    fn failed(&self) -> Vec<&O> {
        self.failed.iter().collect()
    }
}

/// A target's command line: its flags, its target, its reports. Every method with a body
/// has a plain default; a target overrides the ones whose output it shapes itself.
pub trait Frontend {
    /// The system under test.
    type Target: Target;
    /// What a sweep or chaos run adds up.
    type Summary: Tally<<Self::Target as Target>::Outcome>;

    /// The binary's name, for the usage.
    fn name(&self) -> &'static str;
    /// The target's own flags.
    fn flags(&self) -> &'static [Flag] {
        &[]
    }
    /// The target `invocation` runs; an error (a bad flag value) exits with status 2.
    fn target(&self, invocation: &Invocation) -> Result<Self::Target, String>;

    /// Threads for a sweep or chaos run, given `--jobs` or not (default: the machine's
    /// cores). A target whose runs must take turns returns 1.
    fn jobs(&self, asked: Option<usize>) -> usize {
        asked.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `seeds` on `jobs` threads ([`crate::sweep`]); a target may add a progress bar.
    fn sweep(&self, target: &Self::Target, seeds: &[u64], jobs: usize) -> Self::Summary {
        let started = Instant::now();
        let mut summary = Self::Summary::of_runs(crate::sweep(target, seeds, jobs, &|_, _, _| {}));
        summary.finish(started.elapsed().as_secs_f64());
        summary
    }

    /// Adds a chaos run's `batch` (seeds up to `next`) to `total`; a target may report the
    /// batch's failures and the progress as it goes.
    fn chaos_batch(
        &self,
        _target: &Self::Target,
        _invocation: &Invocation,
        total: &mut Self::Summary,
        batch: Self::Summary,
        _next: u64,
        _started: Instant,
    ) {
        total.merge(batch);
    }

    /// Prints one run's outcome (`run`, `replay`).
    fn print_run(
        &self,
        target: &Self::Target,
        _invocation: &Invocation,
        outcome: &<Self::Target as Target>::Outcome,
    ) {
        let status = if outcome.passed() { "passed" } else { "FAILED" };
        println!(
            "seed {} {status}, trace {:016x}",
            outcome.seed(),
            outcome.trace_hash()
        );
        if !outcome.passed() {
            eprintln!("  replay: {}", target.replay_command(outcome.seed()));
        }
    }

    /// Prints a sweep's or chaos run's summary (failures first); returns whether it passed.
    fn print_summary(
        &self,
        target: &Self::Target,
        invocation: &Invocation,
        summary: &Self::Summary,
    ) -> bool {
        let failed = summary.failed();
        for outcome in &failed {
            eprintln!(
                "FAILED seed {}\n  replay: {}",
                outcome.seed(),
                target.replay_command(outcome.seed())
            );
        }
        println!("{} seeds, {} failed", summary.seeds(), failed.len());
        if invocation.json {
            let seeds: Vec<String> = failed.iter().map(|o| o.seed().to_string()).collect();
            println!(
                "{{\"seeds\":{},\"failed\":[{}]}}",
                summary.seeds(),
                seeds.join(",")
            );
        }
        failed.is_empty()
    }

    /// `shrink`: shrinks `seed` and prints the result; returns whether the seed passed.
    /// An error (the default: a target that cannot shrink) exits with status 2.
    fn shrink(
        &self,
        _target: &Self::Target,
        _invocation: &Invocation,
        _seed: u64,
    ) -> Result<bool, String> {
        Err(format!("{} cannot shrink", self.name()))
    }
}

/// The usage of `frontend`'s binary.
pub fn usage<F: Frontend>(frontend: &F) -> String {
    let mut text = format!(
        "usage: {} <command> [options]\n\
         commands:\n  \
         run --seed S | replay --seed S | shrink --seed S\n  \
         sweep --seeds A..B [--shard I/N] [--jobs N]\n  \
         chaos [--duration D (default 60s)] [--start S (default {CHAOS_START_DEFAULT})] [--jobs N]\n  \
         determinism [--seeds A..B (default 0..20)]\n\
         options:\n  --json: one JSON object as the last line\n",
        frontend.name()
    );
    for flag in frontend.flags() {
        let value = flag.value.map(|v| format!(" {v}")).unwrap_or_default();
        text.push_str(&format!("  --{}{value}: {}\n", flag.name, flag.help));
    }
    text
}

/// The flags of the core, with whether they take a value.
const CORE_FLAGS: &[(&str, bool)] = &[
    ("seed", true),
    ("seeds", true),
    ("shard", true),
    ("jobs", true),
    ("duration", true),
    ("start", true),
    ("json", false),
];

/// Parses `args` (without the program name) against the core's flags and `flags`.
pub fn parse(args: &[String], flags: &'static [Flag]) -> Result<Parsed, String> {
    if args
        .iter()
        .any(|a| a == "-h" || a == "--help" || a == "help")
    {
        return Ok(Parsed::Help);
    }
    let Some((command, rest)) = args.split_first() else {
        return Err("no command".into());
    };
    let mut core: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut options = Options::default();
    let mut positional: Option<&str> = None;
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        i += 1;
        let Some(flag) = arg.strip_prefix("--") else {
            if positional.replace(arg).is_some() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            continue;
        };
        let (name, joined) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let (name, takes_value): (&'static str, bool) =
            if let Some(&(name, takes)) = CORE_FLAGS.iter().find(|(n, _)| *n == name) {
                (name, takes)
            } else if let Some(own) = flags.iter().find(|f| f.name == name) {
                (own.name, own.value.is_some())
            } else {
                return Err(format!("unknown flag --{name}"));
            };
        let value = match (takes_value, joined) {
            (false, None) => None,
            (false, Some(_)) => return Err(format!("--{name} takes no value")),
            (true, Some(value)) => Some(value),
            (true, None) => {
                let value = rest
                    .get(i)
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                i += 1;
                Some(value.clone())
            }
        };
        if CORE_FLAGS.iter().any(|(n, _)| *n == name) {
            core.push((name, value));
        } else {
            options.given.push((name, value));
        }
    }
    let mut used: Vec<&str> = vec!["json"];
    let mut take = |name: &'static str| -> Option<String> {
        used.push(name);
        core.iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    };
    let json = core.iter().any(|(n, _)| *n == "json");
    let seed = |take: &mut dyn FnMut(&'static str) -> Option<String>| -> Result<u64, String> {
        let text = take("seed")
            .or(positional.map(str::to_string))
            .ok_or("a seed is needed: --seed S")?;
        number(&text, "seed")
    };
    let jobs =
        |take: &mut dyn FnMut(&'static str) -> Option<String>| -> Result<Option<usize>, String> {
            take("jobs")
                .map(|text| {
                    number(&text, "jobs")
                        .and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
                })
                .transpose()
        };
    let command = match command.as_str() {
        "run" => Command::Run {
            seed: seed(&mut take)?,
        },
        "replay" => Command::Replay {
            seed: seed(&mut take)?,
        },
        "shrink" => Command::Shrink {
            seed: seed(&mut take)?,
        },
        "sweep" => {
            let (from, to) = parse_range(&take("seeds").ok_or("sweep needs --seeds A..B")?)?;
            let shard = take("shard").map(|s| parse_shard(&s)).transpose()?;
            Command::Sweep {
                from,
                to,
                shard,
                jobs: jobs(&mut take)?,
            }
        }
        "chaos" => Command::Chaos {
            duration: take("duration")
                .map(|d| omendb_keygen::parse_duration(&d).map_err(|e| format!("--duration: {e}")))
                .transpose()?
                .unwrap_or(CHAOS_DURATION_DEFAULT),
            start: take("start")
                .map(|s| number(&s, "start"))
                .transpose()?
                .unwrap_or(CHAOS_START_DEFAULT),
            jobs: jobs(&mut take)?,
        },
        "determinism" => {
            let (from, to) = take("seeds")
                .map(|r| parse_range(&r))
                .transpose()?
                .unwrap_or(DETERMINISM_SEEDS_DEFAULT);
            Command::Determinism { from, to }
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    if let Some((name, _)) = core.iter().find(|(n, _)| !used.contains(n)) {
        return Err(format!("--{name} does not apply to {}", args[0]));
    }
    if positional.is_some()
        && !matches!(
            command,
            Command::Run { .. } | Command::Replay { .. } | Command::Shrink { .. }
        )
    {
        return Err(format!(
            "unexpected argument {:?}",
            positional.unwrap_or_default()
        ));
    }
    Ok(Parsed::Invocation(Invocation {
        command,
        json,
        options,
    }))
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("bad {what} {text:?}: {e}"))
}

/// Parses a seed range `A..B` (B excluded, B >= A).
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got {text:?}"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|e| format!("bad start {a:?}: {e}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|e| format!("bad end {b:?}: {e}"))?;
    if b < a {
        return Err(format!("empty range {text}"));
    }
    Ok((a, b))
}

/// Parses a shard `I/N` (0 <= I < N).
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("expected I/N, got {text:?}"))?;
    let i: u64 = i
        .trim()
        .parse()
        .map_err(|e| format!("bad shard {i:?}: {e}"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|e| format!("bad shard count {n:?}: {e}"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// The whole binary: parses the process's arguments, runs the command, returns its exit code.
pub fn main<F: Frontend>(frontend: &F) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match parse(&args, frontend.flags()) {
        Ok(Parsed::Help) => {
            print!("{}", usage(frontend));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Invocation(invocation)) => invocation,
        Err(e) => return bad_arguments(frontend, &e),
    };
    match execute(frontend, &invocation) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => bad_arguments(frontend, &e),
    }
}

fn bad_arguments<F: Frontend>(frontend: &F, error: &str) -> ExitCode {
    eprintln!("error: {error}");
    eprint!("{}", usage(frontend));
    ExitCode::from(2)
}

/// Runs a parsed command: whether every run passed, or an error in the arguments.
pub fn execute<F: Frontend>(frontend: &F, invocation: &Invocation) -> Result<bool, String> {
    let target = frontend.target(invocation)?;
    Ok(match invocation.command {
        Command::Run { seed } | Command::Replay { seed } => {
            let outcome = target.run(seed);
            frontend.print_run(&target, invocation, &outcome);
            outcome.passed()
        }
        Command::Sweep {
            from,
            to,
            shard,
            jobs,
        } => {
            let seeds = crate::shard(from, to, shard);
            let summary = frontend.sweep(&target, &seeds, frontend.jobs(jobs));
            frontend.print_summary(&target, invocation, &summary)
        }
        Command::Chaos {
            duration,
            start,
            jobs,
        } => {
            let started = Instant::now();
            let mut total = F::Summary::default();
            crate::chaos(
                &target,
                start,
                duration,
                frontend.jobs(jobs),
                CHAOS_BATCH_SEEDS,
                &mut |runs, next| {
                    let batch = F::Summary::of_runs(runs);
                    frontend.chaos_batch(&target, invocation, &mut total, batch, next, started);
                },
            );
            total.finish(started.elapsed().as_secs_f64());
            frontend.print_summary(&target, invocation, &total)
        }
        Command::Determinism { from, to } => {
            let (same, lines) = crate::determinism(&target, from, to);
            for line in lines {
                println!("{line}");
            }
            same
        }
        Command::Shrink { seed } => frontend.shrink(&target, invocation, seed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "ops",
            value: Some("N"),
            help: "steps",
        },
        Flag {
            name: "loud",
            value: None,
            help: "a switch",
        },
    ];

    fn parsed(line: &str) -> Result<Invocation, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        match parse(&args, FLAGS)? {
            Parsed::Help => Err("help".into()),
            Parsed::Invocation(invocation) => Ok(invocation),
        }
    }

    /// A third target with nothing but the required methods: seed `s` fails when
    /// `s % 5 == 4`, or every seed with `--loud`.
    struct Toy {
        loud: bool,
    }

    struct Toyed(u64, bool);

    impl Outcome for Toyed {
        fn seed(&self) -> u64 {
            self.0
        }
        fn passed(&self) -> bool {
            self.1
        }
        fn trace_hash(&self) -> u64 {
            self.0 ^ 0xfeed
        }
    }

    impl Target for Toy {
        type Outcome = Toyed;
        fn run(&self, seed: u64) -> Toyed {
            Toyed(seed, !self.loud && seed % 5 != 4)
        }
        fn panicked(&self, seed: u64, _message: String) -> Toyed {
            Toyed(seed, false)
        }
        fn replay_command(&self, seed: u64) -> String {
            format!("toy run --seed {seed}")
        }
    }

    struct ToyCli;

    impl Frontend for ToyCli {
        type Target = Toy;
        type Summary = Totals<Toyed>;
        fn name(&self) -> &'static str {
            "toy"
        }
        fn flags(&self) -> &'static [Flag] {
            FLAGS
        }
        fn target(&self, invocation: &Invocation) -> Result<Toy, String> {
            Ok(Toy {
                loud: invocation.options.switch("loud"),
            })
        }
    }

    #[test]
    fn a_target_with_only_the_required_methods_gets_every_command() {
        let passed = |line: &str| execute(&ToyCli, &parsed(line).expect("parses"));
        assert_eq!(passed("run --seed 3"), Ok(true));
        assert_eq!(passed("replay 4"), Ok(false));
        assert_eq!(passed("sweep --seeds 0..4 --jobs 2"), Ok(true));
        assert_eq!(passed("sweep --seeds 0..40 --shard 4/5 --json"), Ok(false));
        assert_eq!(passed("sweep --seeds 0..40 --shard 3/5"), Ok(true));
        assert_eq!(passed("determinism --seeds 0..3"), Ok(true));
        assert_eq!(passed("chaos --duration 0s --start 0"), Ok(false));
        assert_eq!(passed("sweep --seeds 0..1 --loud"), Ok(false));
        assert_eq!(passed("shrink 4"), Err("toy cannot shrink".to_string()));
        let mut totals = Totals::<Toyed>::of_runs(crate::sweep(
            &Toy { loud: false },
            &[3, 4, 9],
            1,
            &|_, _, _| {},
        ));
        assert_eq!((totals.seeds(), totals.failed().len()), (3, 2));
        totals.merge(Totals::default());
        assert_eq!(totals.seeds, 3);
    }

    #[test]
    fn commands_parse_with_their_defaults() {
        let sweep =
            parsed("sweep --seeds 0..200 --jobs 2 --json --ops=50 --shard 1/4").expect("parses");
        assert_eq!(
            sweep.command,
            Command::Sweep {
                from: 0,
                to: 200,
                shard: Some((1, 4)),
                jobs: Some(2)
            }
        );
        assert!(sweep.json);
        assert_eq!(sweep.options.value("ops"), Some("50"));
        assert!(!sweep.options.switch("loud"));
        let replay = parsed("replay 42 --loud").expect("parses");
        assert_eq!(replay.command, Command::Replay { seed: 42 });
        assert!(replay.options.switch("loud"));
        assert_eq!(
            parsed("run --seed 7").expect("parses").command,
            Command::Run { seed: 7 }
        );
        assert_eq!(
            parsed("chaos --duration 3m --start 5")
                .expect("parses")
                .command,
            Command::Chaos {
                duration: Duration::from_secs(180),
                start: 5,
                jobs: None
            }
        );
        assert_eq!(
            parsed("determinism").expect("parses").command,
            Command::Determinism { from: 0, to: 20 }
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        for (line, says) in [
            ("", "no command"),
            ("sweep", "--seeds"),
            ("sweep --seeds 5..2", "empty range"),
            ("sweep --seeds 0..9 --shard 4/4", "0 <= I < N"),
            ("replay --seeds 0..9 3", "does not apply"),
            ("run", "a seed is needed"),
            ("run --seed 1 --nope", "unknown flag"),
            ("run --seed 1 --ops", "needs a value"),
            ("run --seed 1 --loud=3", "takes no value"),
            ("sweep --seeds 0..9 17", "unexpected argument"),
            ("fly", "unknown command"),
        ] {
            let error = parsed(line).expect_err(line);
            assert!(error.contains(says), "{line:?}: {error}");
        }
        assert_eq!(parsed("sweep --help").expect_err("help"), "help");
    }
}
