//! Random operations against a simple model, with crashes: whatever the seed, the sector
//! size and the interleaving, synced data always survives, unsynced data only ever shows
//! as one of the states it passed through, and the disk's invariants hold.

use omendb_env::{File, Fs, OpenMode};
use omendb_faults::{FaultPlan, SimFs};
use proptest::prelude::*;
use std::path::Path;

const FILES: usize = 3;
const FILE_BYTES_MAX: u64 = 24 * 1024;

#[derive(Debug, Clone)]
enum Op {
    Write {
        file: usize,
        offset: u64,
        len: usize,
        byte: u8,
    },
    SetLen {
        file: usize,
        len: u64,
    },
    Sync {
        file: usize,
    },
    /// Write a temp file, sync it, rename it over the file, sync the directory.
    Replace {
        file: usize,
        len: usize,
        byte: u8,
    },
    Read {
        file: usize,
    },
    Crash,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let file = 0..FILES;
    prop_oneof![
        6 => (file.clone(), 0..FILE_BYTES_MAX - 4096, 1..4096usize, any::<u8>())
            .prop_map(|(file, offset, len, byte)| Op::Write { file, offset, len, byte }),
        1 => (file.clone(), 0..FILE_BYTES_MAX).prop_map(|(file, len)| Op::SetLen { file, len }),
        3 => file.clone().prop_map(|file| Op::Sync { file }),
        1 => (file.clone(), 0..6000usize, any::<u8>()).prop_map(|(file, len, byte)| Op::Replace { file, len, byte }),
        2 => file.prop_map(|file| Op::Read { file }),
        1 => Just(Op::Crash),
    ]
}

/// What the model knows of one file.
#[derive(Debug, Clone, Default)]
struct ModelFile {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Bytes an unsynced write or size change may have touched since the last sync.
    touched: Vec<bool>,
    /// Every size the file had since the last sync, the durable one first.
    sizes_seen: Vec<usize>,
    /// Sizes a crash may leave inside an extending write: `(from, to)`, both included.
    sizes_inside: Vec<(usize, usize)>,
}

impl ModelFile {
    fn touch(&mut self, from: usize, to: usize) {
        if self.touched.len() < to {
            self.touched.resize(to, false);
        }
        self.touched[from..to].fill(true);
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if end > self.current.len() {
            let inside_from = self.current.len().max(offset) + 1;
            if inside_from < end {
                self.sizes_inside.push((inside_from, end - 1));
            }
            self.current.resize(end, 0);
            self.sizes_seen.push(end);
        }
        self.current[offset..end].copy_from_slice(bytes);
        self.touch(offset, end);
    }

    fn set_len(&mut self, len: usize) {
        let before = self.current.len();
        self.current.resize(len, 0);
        self.sizes_seen.push(len);
        self.touch(len.min(before), len.max(before).max(self.durable.len()));
    }

    fn synced(&mut self) {
        self.durable.clone_from(&self.current);
        self.settled_as(self.current.clone());
    }

    fn settled_as(&mut self, bytes: Vec<u8>) {
        self.current = bytes.clone();
        self.touched = vec![false; bytes.len()];
        self.sizes_seen = vec![bytes.len()];
        self.sizes_inside.clear();
        self.durable = bytes;
    }

    /// Checks what a crash left against what was durable.
    fn check_after_crash(&self, got: &[u8]) -> Result<(), String> {
        let inside = self
            .sizes_inside
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&got.len()));
        if !self.sizes_seen.contains(&got.len()) && !inside {
            return Err(format!(
                "size {} was never seen ({:?})",
                got.len(),
                self.sizes_seen
            ));
        }
        for (i, durable) in self.durable.iter().enumerate() {
            let untouched = !self.touched.get(i).copied().unwrap_or(false);
            if untouched && i < got.len() && got[i] != *durable {
                return Err(format!(
                    "synced byte {i} changed: {} -> {}",
                    durable, got[i]
                ));
            }
        }
        if self.sizes_seen.len() == 1 && got.len() != self.durable.len() {
            return Err("the synced size changed".to_owned());
        }
        Ok(())
    }
}

fn path(file: usize) -> String {
    format!("/db/f{file}")
}

fn open_all(fs: &SimFs) -> Vec<Box<dyn File>> {
    (0..FILES)
        .map(|i| fs.open(Path::new(&path(i)), OpenMode::ReadWrite).unwrap())
        .collect()
}

fn run(seed: u64, sector_bytes: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let fs = SimFs::new(FaultPlan {
        sector_bytes,
        ..FaultPlan::none().with_seed(seed)
    });
    fs.create_dir(Path::new("/db")).unwrap();
    for i in 0..FILES {
        fs.open(Path::new(&path(i)), OpenMode::CreateNew)
            .unwrap()
            .sync()
            .unwrap();
    }
    fs.sync_dir(Path::new("/db")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let mut model = vec![
        ModelFile {
            sizes_seen: vec![0],
            ..ModelFile::default()
        };
        FILES
    ];
    let mut handles = open_all(&fs);
    for op in ops {
        match *op {
            Op::Write {
                file,
                offset,
                len,
                byte,
            } => {
                handles[file].write_at(&vec![byte; len], offset).unwrap();
                model[file].write(offset as usize, &vec![byte; len]);
            }
            Op::SetLen { file, len } => {
                handles[file].set_len(len).unwrap();
                model[file].set_len(len as usize);
            }
            Op::Sync { file } => {
                handles[file].sync().unwrap();
                model[file].synced();
            }
            Op::Replace { file, len, byte } => {
                let tmp = Path::new("/db/tmp");
                let t = fs.open(tmp, OpenMode::CreateNew).unwrap();
                t.write_at(&vec![byte; len], 0).unwrap();
                t.sync().unwrap();
                fs.rename(tmp, Path::new(&path(file))).unwrap();
                fs.sync_dir(Path::new("/db")).unwrap();
                handles[file] = fs
                    .open(Path::new(&path(file)), OpenMode::ReadWrite)
                    .unwrap();
                model[file].settled_as(vec![byte; len]);
            }
            Op::Read { file } => {
                let got = handles[file].read_all().unwrap();
                prop_assert_eq!(
                    &got,
                    &model[file].current,
                    "file {} reads what was written",
                    file
                );
            }
            Op::Crash => {
                fs.restart();
                for (i, m) in model.iter_mut().enumerate() {
                    let got = fs.read_current(Path::new(&path(i))).unwrap();
                    if let Err(why) = m.check_after_crash(&got) {
                        return Err(TestCaseError::fail(format!(
                            "file {i}: {why}\n{}",
                            fs.fault_log_text()
                        )));
                    }
                    m.settled_as(got);
                }
                handles = open_all(&fs);
                prop_assert_eq!(fs.list(Path::new("/db")).unwrap(), vec!["f0", "f1", "f2"]);
            }
        }
        if let Err(why) = fs.check_invariants() {
            return Err(TestCaseError::fail(why));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn synced_data_survives_random_ops_and_crashes(
        seed in any::<u64>(),
        sector_bytes in prop_oneof![Just(512u64), Just(4096u64)],
        ops in proptest::collection::vec(op_strategy(), 1..80),
    ) {
        run(seed, sector_bytes, &ops)?;
    }
}
