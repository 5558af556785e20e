//! Quickstart: create a table, write rows durably, read them back, reopen, check.
//!
//! `cargo run --release --example quickstart [-- DIR]`

use omendb::{Column, DataType, Database, Durability, Options, TableDef, Value};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let dir = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("omendb-quickstart-{}", std::process::id())),
    };
    let rows = 100_000i64;
    {
        let db = Database::open(&dir, Options::with_sync(Durability::Always))?;
        if db.table_names()?.is_empty() {
            db.create_table(TableDef::new(
                "events",
                vec![
                    Column::new("id", DataType::Int64).primary_key(),
                    Column::new("at", DataType::Timestamp),
                    Column::new("kind", DataType::Utf8),
                    Column::new("score", DataType::Float64).nullable(),
                ],
            )?)?;
        }
        let start = Instant::now();
        for chunk in (0..rows).collect::<Vec<_>>().chunks(10_000) {
            let batch = chunk
                .iter()
                .map(|&id| {
                    vec![
                        Value::Int64(id),
                        Value::Timestamp(1_700_000_000_000_000 + id),
                        Value::Utf8(format!("kind-{}", id % 7)),
                        if id % 10 == 0 {
                            Value::Null
                        } else {
                            Value::Float64(id as f64 / 3.0)
                        },
                    ]
                })
                .collect();
            db.insert_batch("events", batch)?;
        }
        println!(
            "inserted {rows} rows in batches of 10,000 (each batch fsynced) in {:?}",
            start.elapsed()
        );
        db.update(
            "events",
            42,
            vec![
                Value::Int64(42),
                Value::Timestamp(0),
                Value::Utf8("updated".into()),
                Value::Null,
            ],
        )?;
        db.delete("events", 43)?;
        // Dropped without close on purpose: everything acknowledged is already durable.
    }
    let db = Database::open(&dir, Options::default())?;
    let stats = db.open_stats();
    println!(
        "reopened: {} records replayed, {} bytes truncated",
        stats.recovery.records_replayed, stats.recovery.bytes_truncated
    );
    assert_eq!(db.row_count("events")?, rows as usize - 1);
    println!("row 42: {:?}", db.get("events", 42)?);
    println!("row 43: {:?}", db.get("events", 43)?);
    println!("rows 10..13: {:?}", db.scan("events", 10..13)?);
    let lsn = db.checkpoint()?;
    println!("checkpoint at LSN {lsn}; data in {}", dir.display());
    db.close()?;
    Ok(())
}
