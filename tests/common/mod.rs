//! Shared helpers of the integration tests.
#![allow(dead_code)]

pub mod model_ops;

use omendb::{Column, DataType, Database, Durability, Options, Row, TableDef, Value};
use std::path::{Path, PathBuf};

/// `t(k Int64 pk, v Int64, s Utf8 nullable, b Binary nullable)`.
pub fn table_def(name: &str) -> TableDef {
    TableDef::new(
        name,
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Int64),
            Column::new("s", DataType::Utf8).nullable(),
            Column::new("b", DataType::Binary).nullable(),
        ],
    )
    .expect("valid schema")
}

pub fn row(k: i64, v: i64) -> Row {
    vec![
        Value::Int64(k),
        Value::Int64(v),
        Value::Utf8(format!("value-{v}")),
        if v % 3 == 0 {
            Value::Null
        } else {
            Value::Binary(v.to_le_bytes().to_vec())
        },
    ]
}

pub fn open(path: &Path, sync: Durability) -> Database {
    Database::open(path, Options::with_sync(sync)).expect("open")
}

/// The newest log segment of the database at `root`.
pub fn newest_segment(root: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(root.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

/// Copies a database directory (one level of subdirectories) to `to`.
pub fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_db(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
