//! The simulated directory tree: what the process sees, what is durable, and the pending
//! directory operations in between.
//!
//! Inodes are numbers; the root directory is inode [`ROOT`]. A directory keeps two maps
//! from names to inodes: `entries` (what `list` and `open` see) and `durable` (what a crash
//! leaves). Every create, create_dir, rename and remove changes `entries` at once and
//! appends a [`DirOp`] to the pending list; the op lists the *slots* (directory, name) it
//! sets and the inode (or nothing) each slot now holds. A rename sets two slots in one op,
//! which is what makes it atomic: a crash keeps or loses the op as a whole.
//!
//! `sync_dir(d)` makes durable every pending op with a slot in `d`, plus every earlier
//! pending op that shares a slot with one of those (transitively), in order: a rename
//! cannot become durable without the create of the name it moves. Ops on other
//! directories stay pending, as on a file system that only promises what POSIX does. A
//! crash keeps each pending op with a seeded probability, except that an op is lost when
//! an earlier lost op touched one of its slots; kept ops are applied in order. The result
//! is always a namespace some prefix-consistent history could produce: no file in two
//! places, no rename half done. Entries whose directory's own creation did not survive
//! vanish with it.
//!
//! There are no hard links: an inode has at most one name in each view.

use crate::log::{FaultKind, FaultRecord};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path};

/// An inode number.
pub(crate) type Ino = u64;

/// The root directory's inode.
pub(crate) const ROOT: Ino = 0;

/// The longest path (in components) the simulated disk resolves.
pub const PATH_DEPTH_MAX: usize = 256;

/// One directory.
#[derive(Debug, Clone, Default)]
struct Dir {
    entries: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
}

/// A directory entry a pending op sets: `dir/name` now holds `target` (or nothing).
#[derive(Debug, Clone)]
struct Slot {
    dir: Ino,
    name: String,
    target: Option<Ino>,
}

/// One pending directory operation.
#[derive(Debug, Clone)]
struct DirOp {
    op: u64,
    slots: Vec<Slot>,
    /// What it was, for the fault log: "create /a/b", "rename /a -> /b".
    text: String,
    /// The path of the first slot's directory, for the fault log.
    dir_path: String,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Dir(Ino),
    File(Ino),
}

impl Found {
    pub(crate) fn ino(self) -> Ino {
        match self {
            Found::Dir(ino) | Found::File(ino) => ino,
        }
    }
}

/// The directory tree.
#[derive(Debug, Clone)]
pub(crate) struct Namespace {
    dirs: BTreeMap<Ino, Dir>,
    pending: Vec<DirOp>,
}

/// Splits `path` into normal components. `/`, `.` and a leading root are dropped, `..`
/// pops (never above the root): the simulated disk has one tree and no current directory,
/// so `a/b`, `/a/b` and `/a/./c/../b` name the same file.
pub(crate) fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => match name.to_str() {
                Some(name) => out.push(name.to_owned()),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("non-UTF-8 path {}", path.display()),
                    ))
                }
            },
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
        if out.len() > PATH_DEPTH_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path deeper than {PATH_DEPTH_MAX} components"),
            ));
        }
    }
    Ok(out)
}

/// The canonical text of a path: "/" followed by its components.
pub(crate) fn path_text(components: &[String]) -> String {
    if components.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for c in components {
        out.push('/');
        out.push_str(c);
    }
    out
}

fn not_found(components: &[String]) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path_text(components)),
    )
}

fn not_a_directory(components: &[String]) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{}: not a directory", path_text(components)),
    )
}

impl Namespace {
    pub(crate) fn new() -> Namespace {
        let mut dirs = BTreeMap::new();
        dirs.insert(ROOT, Dir::default());
        Namespace {
            dirs,
            pending: Vec::new(),
        }
    }

    pub(crate) fn is_dir(&self, ino: Ino) -> bool {
        self.dirs.contains_key(&ino)
    }

    fn found(&self, ino: Ino) -> Found {
        if self.is_dir(ino) {
            Found::Dir(ino)
        } else {
            Found::File(ino)
        }
    }

    /// Resolves `components` in the current view.
    pub(crate) fn lookup(&self, components: &[String]) -> io::Result<Found> {
        let mut at = ROOT;
        for (i, name) in components.iter().enumerate() {
            let Some(dir) = self.dirs.get(&at) else {
                return Err(not_a_directory(&components[..i]));
            };
            match dir.entries.get(name) {
                Some(&child) => at = child,
                None => return Err(not_found(&components[..=i])),
            }
        }
        Ok(self.found(at))
    }

    /// Resolves `components` in the durable view.
    pub(crate) fn lookup_durable(&self, components: &[String]) -> Option<Found> {
        let mut at = ROOT;
        for name in components {
            at = *self.dirs.get(&at)?.durable.get(name)?;
        }
        Some(self.found(at))
    }

    /// Resolves the parent directory of `components` (which must not be the root) in the
    /// current view; returns it with the last name.
    pub(crate) fn parent<'a>(&self, components: &'a [String]) -> io::Result<(Ino, &'a str)> {
        let Some((name, parent)) = components.split_last() else {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "/: is the root directory",
            ));
        };
        match self.lookup(parent)? {
            Found::Dir(ino) => Ok((ino, name.as_str())),
            Found::File(_) => Err(not_a_directory(parent)),
        }
    }

    /// The entry `name` of directory `dir` in the current view.
    pub(crate) fn child(&self, dir: Ino, name: &str) -> Option<Found> {
        let ino = *self.dirs.get(&dir)?.entries.get(name)?;
        Some(self.found(ino))
    }

    /// The sorted names in directory `dir` (current view).
    pub(crate) fn names(&self, dir: Ino) -> Vec<String> {
        self.dirs
            .get(&dir)
            .map(|d| d.entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn dir_is_empty(&self, dir: Ino) -> bool {
        self.dirs.get(&dir).is_none_or(|d| d.entries.is_empty())
    }

    /// Adds a new, empty directory inode (not yet linked).
    pub(crate) fn add_dir(&mut self, ino: Ino) {
        self.dirs.insert(ino, Dir::default());
    }

    fn set(&mut self, dir: Ino, name: &str, target: Option<Ino>) -> Option<Ino> {
        let entries = &mut self.dirs.get_mut(&dir)?.entries;
        match target {
            Some(ino) => entries.insert(name.to_owned(), ino),
            None => entries.remove(name),
        }
    }

    /// Links `ino` as `parent/name` (a create or create_dir at call `op`).
    pub(crate) fn link(&mut self, parent: Ino, name: &str, ino: Ino, op: u64, path: &[String]) {
        self.set(parent, name, Some(ino));
        let what = if self.is_dir(ino) {
            "create_dir"
        } else {
            "create"
        };
        self.pending.push(DirOp {
            op,
            slots: vec![Slot {
                dir: parent,
                name: name.to_owned(),
                target: Some(ino),
            }],
            text: format!("{what} {}", path_text(path)),
            dir_path: path_text(&path[..path.len().saturating_sub(1)]),
        });
    }

    /// Removes `parent/name`; returns the inode it held.
    pub(crate) fn unlink(
        &mut self,
        parent: Ino,
        name: &str,
        op: u64,
        path: &[String],
    ) -> Option<Ino> {
        let removed = self.set(parent, name, None)?;
        self.pending.push(DirOp {
            op,
            slots: vec![Slot {
                dir: parent,
                name: name.to_owned(),
                target: None,
            }],
            text: format!("remove {}", path_text(path)),
            dir_path: path_text(&path[..path.len().saturating_sub(1)]),
        });
        Some(removed)
    }

    /// Removes the file `components` from both views at once, as damage at rest does (no
    /// pending op, nothing for a crash to undo); returns its inode. `None`, and nothing
    /// changed, if the path is not a file with the same inode in both views or a pending
    /// op touches its entry.
    pub(crate) fn remove_at_rest(&mut self, components: &[String]) -> Option<Ino> {
        let Ok(Found::File(ino)) = self.lookup(components) else {
            return None;
        };
        if self.lookup_durable(components) != Some(Found::File(ino)) {
            return None;
        }
        let (parent, name) = self.parent(components).ok()?;
        let touched = self
            .pending
            .iter()
            .any(|op| op.slots.iter().any(|s| s.dir == parent && s.name == name));
        if touched {
            return None;
        }
        let dir = self.dirs.get_mut(&parent)?;
        dir.entries.remove(name);
        dir.durable.remove(name);
        Some(ino)
    }

    /// Renames `from` to `to` with std's rules; returns the inode `to` held before, if
    /// any. Errors leave everything unchanged.
    pub(crate) fn rename(
        &mut self,
        from: &[String],
        to: &[String],
        op: u64,
    ) -> io::Result<Option<Ino>> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        let Some(moving) = self.child(from_dir, from_name) else {
            return Err(not_found(from));
        };
        if from == to {
            return Ok(None);
        }
        let replaced = self.child(to_dir, to_name);
        if from.starts_with(to) {
            // Linux checks this before the kinds: a target that contains the source is
            // never empty.
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{}: directory not empty", path_text(to)),
            ));
        }
        match (moving, replaced) {
            (Found::Dir(_), _) if to.starts_with(from) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot move {} into itself", path_text(from)),
                ))
            }
            (Found::File(_), Some(Found::Dir(_))) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", path_text(to)),
                ))
            }
            (Found::Dir(_), Some(Found::File(_))) => return Err(not_a_directory(to)),
            (Found::Dir(_), Some(Found::Dir(target))) if !self.dir_is_empty(target) => {
                return Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!("{}: directory not empty", path_text(to)),
                ))
            }
            _ => {}
        }
        let ino = moving.ino();
        self.set(from_dir, from_name, None);
        self.set(to_dir, to_name, Some(ino));
        self.pending.push(DirOp {
            op,
            slots: vec![
                Slot {
                    dir: from_dir,
                    name: from_name.to_owned(),
                    target: None,
                },
                Slot {
                    dir: to_dir,
                    name: to_name.to_owned(),
                    target: Some(ino),
                },
            ],
            text: format!("rename {} -> {}", path_text(from), path_text(to)),
            dir_path: path_text(&from[..from.len() - 1]),
        });
        Ok(replaced.map(Found::ino))
    }

    /// Whether any pending op has a slot in `dir`.
    pub(crate) fn has_pending_in(&self, dir: Ino) -> bool {
        self.pending
            .iter()
            .any(|op| op.slots.iter().any(|s| s.dir == dir))
    }

    /// The indices of the pending ops `sync_dir(dir)` covers (see the module doc).
    fn covered_by(&self, dir: Ino) -> Vec<bool> {
        let mut needed: BTreeSet<(Ino, &str)> = BTreeSet::new();
        let mut covered = vec![false; self.pending.len()];
        for (i, op) in self.pending.iter().enumerate().rev() {
            let hit = op
                .slots
                .iter()
                .any(|s| s.dir == dir || needed.contains(&(s.dir, s.name.as_str())));
            if hit {
                covered[i] = true;
                needed.extend(op.slots.iter().map(|s| (s.dir, s.name.as_str())));
            }
        }
        covered
    }

    fn apply_durable(&mut self, op: &DirOp) {
        for slot in &op.slots {
            if let Some(dir) = self.dirs.get_mut(&slot.dir) {
                match slot.target {
                    Some(ino) => dir.durable.insert(slot.name.clone(), ino),
                    None => dir.durable.remove(&slot.name),
                };
            }
        }
    }

    /// Takes the pending ops selected by `covered` out of the pending list, in order.
    fn take_covered(&mut self, covered: &[bool]) -> Vec<DirOp> {
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for (op, is_covered) in std::mem::take(&mut self.pending).into_iter().zip(covered) {
            if *is_covered {
                taken.push(op);
            } else {
                kept.push(op);
            }
        }
        self.pending = kept;
        taken
    }

    /// A successful `sync_dir(dir)`.
    pub(crate) fn sync_dir(&mut self, dir: Ino) {
        let covered = self.covered_by(dir);
        for op in self.take_covered(&covered) {
            self.apply_durable(&op);
        }
    }

    /// Keeps each of `ops` with probability `keep`, losing an op when an earlier lost one
    /// shares a slot; applies the kept ones to the durable view in order.
    fn settle(
        &mut self,
        ops: Vec<DirOp>,
        rng: &mut ChaCha8Rng,
        keep: f64,
        records: &mut Vec<FaultRecord>,
    ) {
        let mut lost: BTreeSet<(Ino, String)> = BTreeSet::new();
        for op in ops {
            let coin = rng.random_bool(keep);
            let depends_on_lost = op
                .slots
                .iter()
                .any(|s| lost.contains(&(s.dir, s.name.clone())));
            if coin && !depends_on_lost {
                self.apply_durable(&op);
                continue;
            }
            lost.extend(op.slots.iter().map(|s| (s.dir, s.name.clone())));
            records.push(FaultRecord {
                op: op.op,
                kind: FaultKind::DirOpLost,
                path: op.dir_path.clone(),
                offset: 0,
                len_bytes: 0,
                detail: if depends_on_lost {
                    format!("{} (an earlier op on its entry was lost)", op.text)
                } else {
                    op.text.clone()
                },
            });
        }
    }

    /// A crash: settles every pending op, then makes the durable view the current one.
    /// Returns the inodes that survive (reachable from the root), directories included.
    pub(crate) fn crash(
        &mut self,
        rng: &mut ChaCha8Rng,
        keep: f64,
        records: &mut Vec<FaultRecord>,
    ) -> BTreeSet<Ino> {
        let ops = std::mem::take(&mut self.pending);
        self.settle(ops, rng, keep, records);
        let mut alive = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if !alive.insert(ino) {
                continue;
            }
            if let Some(dir) = self.dirs.get(&ino) {
                stack.extend(dir.durable.values().copied());
            }
        }
        self.dirs.retain(|ino, _| alive.contains(ino));
        for dir in self.dirs.values_mut() {
            dir.entries.clone_from(&dir.durable);
        }
        alive
    }

    /// Every inode something still refers to: reachable from the root through current or
    /// durable entries, or named by a pending op. The rest can be freed.
    pub(crate) fn referenced(&self) -> BTreeSet<Ino> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![ROOT];
        for op in &self.pending {
            for slot in &op.slots {
                stack.push(slot.dir);
                stack.extend(slot.target);
            }
        }
        while let Some(ino) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if let Some(dir) = self.dirs.get(&ino) {
                stack.extend(dir.entries.values().copied());
                stack.extend(dir.durable.values().copied());
            }
        }
        seen
    }

    /// Drops directory inodes not in `keep`.
    pub(crate) fn retain_dirs(&mut self, keep: &BTreeSet<Ino>) {
        self.dirs
            .retain(|ino, _| *ino == ROOT || keep.contains(ino));
    }

    /// Every path in one view, sorted, with what it names (the root excluded).
    pub(crate) fn walk(&self, durable: bool) -> Vec<(String, Found)> {
        let mut out = Vec::new();
        self.walk_from(ROOT, "", durable, &mut out);
        out
    }

    fn walk_from(&self, dir: Ino, prefix: &str, durable: bool, out: &mut Vec<(String, Found)>) {
        let Some(d) = self.dirs.get(&dir) else { return };
        let entries = if durable { &d.durable } else { &d.entries };
        for (name, &ino) in entries {
            let path = format!("{prefix}/{name}");
            let found = self.found(ino);
            out.push((path.clone(), found));
            if let Found::Dir(child) = found {
                if out.len() <= PATHS_WALKED_MAX {
                    self.walk_from(child, &path, durable, out);
                }
            }
        }
    }

    /// The number of pending directory operations.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Structural checks: every entry points at a known inode kind, no inode has two
    /// names in one view, every pending slot names a known directory.
    pub(crate) fn check_invariants(&self, is_file: impl Fn(Ino) -> bool) -> Result<(), String> {
        for durable in [false, true] {
            let mut named = BTreeSet::new();
            for (dir_ino, dir) in &self.dirs {
                let entries = if durable { &dir.durable } else { &dir.entries };
                for (name, ino) in entries {
                    if !self.is_dir(*ino) && !is_file(*ino) {
                        return Err(format!(
                            "entry {name} of dir {dir_ino} points at unknown inode {ino}"
                        ));
                    }
                    if !named.insert(*ino) {
                        return Err(format!(
                            "inode {ino} has two names (durable view: {durable})"
                        ));
                    }
                }
            }
        }
        for op in &self.pending {
            for slot in &op.slots {
                if !self.is_dir(slot.dir) {
                    return Err(format!(
                        "pending op {} names unknown dir {}",
                        op.text, slot.dir
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A walk stops descending once it has this many paths (a guard, far above real use).
const PATHS_WALKED_MAX: usize = 1 << 20;
