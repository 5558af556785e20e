//! The Env boundary holds: with every fault off, `SimFs` answers a random script of `Fs`
//! and `File` calls exactly as `OsEnv` on a real temporary directory does (same data,
//! same listings, same error kinds), so an engine tested on `SimFs` meets no surprise on a
//! real disk. `FaultyFs` with no faults is checked to be transparent the same way.
//!
//! One known difference is kept out of the script: opening a directory read-only succeeds
//! on Linux and fails with `IsADirectory` on `SimFs`.

use omendb_env::{File, Fs, OpenMode, OsEnv};
use omendb_faults::{FaultPlan, FaultyFs, SimFs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const NAMES: [&str; 8] = ["a", "b", "d", "d/a", "d/b", "d/e", "d/e/a", "a/x"];
const MODES: [OpenMode; 4] = [
    OpenMode::Read,
    OpenMode::ReadWrite,
    OpenMode::Create,
    OpenMode::CreateNew,
];
const HANDLES: usize = 4;

/// One file system under test, with the handles the script opened on it.
struct Subject {
    fs: Arc<dyn Fs>,
    root: PathBuf,
    handles: Vec<Option<Box<dyn File>>>,
}

impl Subject {
    fn new(fs: Arc<dyn Fs>, root: PathBuf) -> Subject {
        Subject {
            fs,
            root,
            handles: (0..HANDLES).map(|_| None).collect(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn is_dir(&self, name: &str) -> bool {
        self.fs.list(&self.path(name)).is_ok()
    }
}

fn show<T: std::fmt::Debug>(result: io::Result<T>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        // EBADF and EINVAL have no stable kind of their own: compare their codes.
        Err(e) => match format!("{:?}", e.kind()).as_str() {
            "Uncategorized" => format!("err os {:?}", e.raw_os_error()),
            kind => format!("err {kind}"),
        },
    }
}

/// Runs one random step on `subject`; returns what it saw.
fn step(subject: &mut Subject, choice: &Choice) -> String {
    let name = NAMES[choice.name];
    let other = NAMES[choice.other];
    let handle = choice.handle;
    match choice.kind {
        0 => {
            let mode = MODES[choice.mode];
            if mode == OpenMode::Read && subject.is_dir(name) {
                return "skipped: read-only open of a directory".to_owned();
            }
            match subject.fs.open(&subject.path(name), mode) {
                Ok(file) => {
                    subject.handles[handle] = Some(file);
                    "ok open".to_owned()
                }
                Err(e) => show::<()>(Err(e)),
            }
        }
        1 => match &subject.handles[handle] {
            Some(f) => show(f.write_at(&vec![choice.byte; choice.len], choice.offset)),
            None => "no handle".to_owned(),
        },
        2 => match &subject.handles[handle] {
            Some(f) => {
                let mut buf = vec![0u8; choice.len];
                show(
                    f.read_at(&mut buf, choice.offset)
                        .map(|n| buf[..n].to_vec()),
                )
            }
            None => "no handle".to_owned(),
        },
        3 => match &subject.handles[handle] {
            Some(f) => show(f.set_len(choice.offset)),
            None => "no handle".to_owned(),
        },
        4 => match &subject.handles[handle] {
            // The page-cache hint on synced bytes: accepted on both sides, and the later reads
            // of the script, compared with SimFs's, show that it changed nothing.
            Some(f) => format!(
                "{} {} {}",
                show(f.len()),
                show(f.sync()),
                show(f.drop_cached(choice.offset / 2..choice.offset / 2 + choice.len as u64))
            ),
            None => "no handle".to_owned(),
        },
        5 => show(subject.fs.rename(&subject.path(name), &subject.path(other))),
        6 => show(subject.fs.remove(&subject.path(name))),
        7 => show(
            subject
                .fs
                .list(&subject.path(if choice.mode == 0 { "" } else { name })),
        ),
        8 => show(subject.fs.create_dir(&subject.path(name))),
        9 => show(subject.fs.sync_dir(&subject.path(name))),
        10 => show(subject.fs.exists(&subject.path(name))),
        _ => {
            subject.handles[handle] = None;
            "dropped".to_owned()
        }
    }
}

#[derive(Debug)]
struct Choice {
    kind: u32,
    name: usize,
    other: usize,
    mode: usize,
    handle: usize,
    offset: u64,
    len: usize,
    byte: u8,
}

fn choose(rng: &mut ChaCha8Rng) -> Choice {
    Choice {
        // Opens are a third of the steps, so that handles exist for the file calls.
        kind: match rng.random_range(0..18) {
            kind @ 0..12 => kind,
            _ => 0,
        },
        name: rng.random_range(0..NAMES.len()),
        other: rng.random_range(0..NAMES.len()),
        mode: rng.random_range(0..MODES.len()),
        handle: rng.random_range(0..HANDLES),
        offset: rng.random_range(0..10_000),
        len: rng.random_range(0..3000),
        byte: rng.random(),
    }
}

fn compare(seed: u64, steps: usize, make: impl Fn(&Path) -> Arc<dyn Fs>) {
    let dir = tempfile::tempdir().unwrap();
    let mut real = Subject::new(Arc::new(OsEnv::new()), dir.path().to_path_buf());
    let mut other = Subject::new(make(dir.path()), PathBuf::from("/sim"));
    other.fs.create_dir(Path::new("/sim")).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..steps {
        let choice = choose(&mut rng);
        let expected = step(&mut real, &choice);
        let got = step(&mut other, &choice);
        assert_eq!(got, expected, "seed {seed}, step {i}: {choice:?}");
    }
}

#[test]
fn sim_fs_without_faults_behaves_like_the_real_disk() {
    for seed in 0..16 {
        compare(seed, 400, |_| {
            Arc::new(SimFs::new(FaultPlan::none().with_seed(seed)))
        });
    }
}

#[test]
fn faulty_fs_without_faults_is_transparent() {
    for seed in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let shadow = dir.path().to_path_buf();
        compare(seed, 200, move |_| {
            // The faulty side runs on its own real directory, mounted at /sim.
            Arc::new(Rooted {
                inner: FaultyFs::new(Arc::new(OsEnv::new()), FaultPlan::none()),
                root: shadow.clone(),
            })
        });
    }
}

/// Maps `/sim/...` to a real directory, so the faulty side does not share the real one.
struct Rooted {
    inner: FaultyFs,
    root: PathBuf,
}

impl Rooted {
    fn map(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/sim") {
            Ok(rest) => self.root.join(rest),
            Err(_) => self.root.clone(),
        }
    }
}

impl Fs for Rooted {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>> {
        self.inner.open(&self.map(path), mode)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(&self.map(from), &self.map(to))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(&self.map(path))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(&self.map(dir))
    }
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir(&self.map(dir))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(&self.map(dir))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(&self.map(path))
    }
}
