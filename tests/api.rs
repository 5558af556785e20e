//! The table API and its errors: every bad input gets a typed error and changes nothing.

mod common;

use common::*;
use omendb::limits::{BATCH_ROWS_MAX, NAME_BYTES_MAX, VALUE_BYTES_MAX};
use omendb::{Column, DataType, Database, Durability, Error, TableDef, Value};

fn fresh() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Durability::None);
    db.create_table(table_def("t")).unwrap();
    (dir, db)
}

#[test]
fn empty_table_get_scan_delete() {
    let (_dir, db) = fresh();
    assert_eq!(db.get("t", 0).unwrap(), None);
    assert!(db.scan("t", ..).unwrap().is_empty());
    assert!(!db.delete("t", 0).unwrap());
    assert_eq!(db.row_count("t").unwrap(), 0);
    assert!(matches!(
        db.update("t", 1, row(1, 1)),
        Err(Error::KeyNotFound { key: 1, .. })
    ));
}

#[test]
fn single_row_life_cycle() {
    let (_dir, db) = fresh();
    db.insert("t", row(7, 1)).unwrap();
    assert_eq!(db.get("t", 7).unwrap(), Some(row(7, 1)));
    assert_eq!(db.scan("t", 7..=7).unwrap(), vec![row(7, 1)]);
    assert!(db.scan("t", 8..).unwrap().is_empty());
    db.update("t", 7, row(7, 2)).unwrap();
    assert_eq!(db.get("t", 7).unwrap(), Some(row(7, 2)));
    assert!(db.delete("t", 7).unwrap());
    assert!(!db.delete("t", 7).unwrap());
    assert_eq!(db.get("t", 7).unwrap(), None);
}

#[test]
fn extreme_keys_and_ranges() {
    let (dir, db) = fresh();
    let keys = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    for &k in &keys {
        db.insert("t", row(k, 1)).unwrap();
    }
    let scanned: Vec<Value> = db
        .scan("t", ..)
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        scanned,
        keys.iter().map(|&k| Value::Int64(k)).collect::<Vec<_>>()
    );
    assert_eq!(db.scan("t", i64::MAX..).unwrap().len(), 1);
    assert_eq!(db.scan("t", ..=i64::MIN).unwrap().len(), 1);
    assert_eq!(db.scan("t", 5..5).unwrap().len(), 0);
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = db.scan("t", 5..1).unwrap();
    assert!(inverted.is_empty());
    drop(db);
    let db = open(dir.path(), Durability::None);
    for &k in &keys {
        assert_eq!(db.get("t", k).unwrap(), Some(row(k, 1)));
    }
}

#[test]
fn sixteen_mib_binary_round_trips_and_larger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let value: Vec<u8> = (0..VALUE_BYTES_MAX).map(|i| (i * 31 % 251) as u8).collect();
    {
        let db = open(dir.path(), Durability::Always);
        db.create_table(table_def("t")).unwrap();
        let big = vec![
            Value::Int64(1),
            Value::Int64(0),
            Value::Null,
            Value::Binary(value.clone()),
        ];
        db.insert("t", big).unwrap();
        let too_big = vec![
            Value::Int64(2),
            Value::Int64(0),
            Value::Null,
            Value::Binary(vec![0; VALUE_BYTES_MAX + 1]),
        ];
        let err = db.insert("t", too_big).unwrap_err();
        assert!(
            matches!(err, Error::ValueTooLarge { ref column, size_bytes, .. } if column == "b" && size_bytes == VALUE_BYTES_MAX + 1),
            "{err}"
        );
        assert_eq!(db.row_count("t").unwrap(), 1);
    }
    let db = open(dir.path(), Durability::Always);
    assert_eq!(db.get("t", 1).unwrap().unwrap()[3], Value::Binary(value));
}

#[test]
fn nulls_only_where_nullable() {
    let (_dir, db) = fresh();
    db.insert(
        "t",
        vec![Value::Int64(1), Value::Int64(1), Value::Null, Value::Null],
    )
    .unwrap();
    assert_eq!(db.get("t", 1).unwrap().unwrap()[2], Value::Null);
    let err = db
        .insert(
            "t",
            vec![Value::Int64(2), Value::Null, Value::Null, Value::Null],
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::NullNotAllowed { ref column, .. } if column == "v"),
        "{err}"
    );
    let err = db
        .insert(
            "t",
            vec![Value::Null, Value::Int64(1), Value::Null, Value::Null],
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::NullNotAllowed { ref column, .. } if column == "k"),
        "{err}"
    );
    assert_eq!(db.row_count("t").unwrap(), 1);
}

#[test]
fn duplicate_keys_are_rejected_and_change_nothing() {
    let (_dir, db) = fresh();
    db.insert_batch("t", vec![row(1, 1), row(2, 2)]).unwrap();
    let err = db.insert("t", row(1, 9)).unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { key: 1, .. }), "{err}");
    // Inside one batch, and against the table: the whole batch is refused.
    let err = db
        .insert_batch("t", vec![row(3, 3), row(4, 4), row(3, 5)])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { key: 3, .. }), "{err}");
    let err = db
        .insert_batch("t", vec![row(5, 5), row(2, 2)])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { key: 2, .. }), "{err}");
    assert_eq!(db.scan("t", ..).unwrap(), vec![row(1, 1), row(2, 2)]);
    // A batch goes into the index before the duplicate shows; the keys before it are taken
    // out again, and the smallest duplicate is named whatever the batch's order.
    db.insert_batch("t", (10..20).map(|k| row(k, k)).collect())
        .unwrap();
    let mut batch: Vec<_> = (30..40).map(|k| row(k, k)).collect();
    batch.extend([row(15, 0), row(41, 41), row(12, 0), row(42, 42)]);
    let err = db.insert_batch("t", batch).unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { key: 12, .. }), "{err}");
    assert_eq!(db.row_count("t").unwrap(), 12);
    for k in 30..43 {
        assert_eq!(db.get("t", k).unwrap(), None, "key {k}");
    }
    db.insert_batch("t", (30..43).map(|k| row(k, k)).collect())
        .unwrap();
    assert_eq!(db.get("t", 35).unwrap(), Some(row(35, 35)));
    db.check_invariants().unwrap();
}

#[test]
fn an_insert_the_log_refuses_is_undone() {
    // Seventeen 16 MiB values pass every row check, but their log record is over the log's
    // 256 MiB limit: the rows are in the table when the log refuses them, and must come out.
    let (_dir, db) = fresh();
    db.insert("t", row(100, 1)).unwrap();
    let big = |k: i64| {
        vec![
            Value::Int64(k),
            Value::Int64(k),
            Value::Null,
            Value::Binary(vec![7; omendb::limits::VALUE_BYTES_MAX]),
        ]
    };
    let err = db
        .insert_batch("t", (0..17).map(big).collect())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "log record bytes",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(db.scan("t", ..).unwrap(), vec![row(100, 1)]);
    // The space is given back, and the keys are free again.
    assert!(
        db.row_bytes("t").unwrap() < 16 << 20,
        "{} bytes kept",
        db.row_bytes("t").unwrap()
    );
    db.insert_batch("t", (0..17).map(|k| row(k, k)).collect())
        .unwrap();
    assert_eq!(db.row_count("t").unwrap(), 18);
    db.check_invariants().unwrap();
}

#[test]
fn bad_rows_get_typed_errors_and_change_nothing() {
    let (_dir, db) = fresh();
    db.insert("t", row(1, 1)).unwrap();
    let before = db.scan("t", ..).unwrap();
    type Case = (Vec<Value>, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (vec![Value::Int64(2)], |e| {
            matches!(
                e,
                Error::RowArity {
                    expected: 4,
                    found: 1,
                    ..
                }
            )
        }),
        (
            vec![
                Value::Int64(2),
                Value::Utf8("x".into()),
                Value::Null,
                Value::Null,
            ],
            |e| matches!(e, Error::TypeMismatch { column, expected: DataType::Int64, found: "Utf8", .. } if column == "v"),
        ),
        (
            vec![
                Value::Float64(2.0),
                Value::Int64(1),
                Value::Null,
                Value::Null,
            ],
            |e| matches!(e, Error::TypeMismatch { column, .. } if column == "k"),
        ),
    ];
    for (bad, expected) in cases {
        let err = db.insert("t", bad.clone()).unwrap_err();
        assert!(expected(&err), "{bad:?}: {err}");
        let err = db.insert_batch("t", vec![row(10, 10), bad]).unwrap_err();
        assert!(expected(&err), "{err}");
    }
    assert!(matches!(
        db.insert_batch("t", vec![]),
        Err(Error::EmptyBatch { .. })
    ));
    assert!(matches!(
        db.insert("nope", row(1, 1)),
        Err(Error::TableNotFound { .. })
    ));
    assert!(matches!(
        db.get("nope", 1),
        Err(Error::TableNotFound { .. })
    ));
    assert!(matches!(
        db.update("t", 1, row(2, 2)),
        Err(Error::KeyChanged {
            key: 1,
            new_key: 2,
            ..
        })
    ));
    assert!(matches!(
        db.table_def("t").unwrap().column_index("zz"),
        Err(Error::ColumnNotFound { .. })
    ));
    assert_eq!(db.scan("t", ..).unwrap(), before);
}

#[test]
fn batch_row_limit_is_enforced() {
    let (_dir, db) = fresh();
    let rows: Vec<_> = (0..=BATCH_ROWS_MAX as i64)
        .map(|k| vec![Value::Int64(k), Value::Int64(0), Value::Null, Value::Null])
        .collect();
    let err = db.insert_batch("t", rows).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "batch rows",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(db.row_count("t").unwrap(), 0);
}

#[test]
fn invalid_schemas_and_names() {
    let pk = || Column::new("id", DataType::Int64).primary_key();
    let schema_err = |r: omendb::Result<TableDef>| matches!(r, Err(Error::InvalidSchema { .. }));
    assert!(schema_err(TableDef::new("t", vec![])));
    assert!(schema_err(TableDef::new(
        "t",
        vec![Column::new("a", DataType::Int64)]
    )));
    assert!(schema_err(TableDef::new(
        "t",
        vec![pk(), Column::new("b", DataType::Int64).primary_key()]
    )));
    assert!(schema_err(TableDef::new(
        "t",
        vec![Column::new("a", DataType::Utf8).primary_key()]
    )));
    assert!(schema_err(TableDef::new("t", vec![pk().nullable()])));
    assert!(schema_err(TableDef::new(
        "t",
        vec![pk(), Column::new("id", DataType::Bool)]
    )));
    let name_err = |r: omendb::Result<TableDef>| matches!(r, Err(Error::InvalidName { .. }));
    assert!(name_err(TableDef::new("", vec![pk()])));
    assert!(name_err(TableDef::new(
        "x".repeat(NAME_BYTES_MAX + 1),
        vec![pk()]
    )));
    assert!(name_err(TableDef::new("a\nb", vec![pk()])));
    assert!(name_err(TableDef::new(
        "t",
        vec![pk(), Column::new("", DataType::Bool)]
    )));
    assert!(TableDef::new("x".repeat(NAME_BYTES_MAX), vec![pk()]).is_ok());
    // A Timestamp key is allowed.
    assert!(TableDef::new(
        "ts",
        vec![Column::new("at", DataType::Timestamp).primary_key()]
    )
    .is_ok());

    let (_dir, db) = fresh();
    assert!(matches!(
        db.create_table(table_def("t")),
        Err(Error::TableExists { .. })
    ));
    assert!(matches!(
        db.drop_table("nope"),
        Err(Error::TableNotFound { .. })
    ));
}

#[test]
fn every_type_round_trips_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let def = TableDef::new(
        "all",
        vec![
            Column::new("at", DataType::Timestamp).primary_key(),
            Column::new("i", DataType::Int64),
            Column::new("f", DataType::Float64),
            Column::new("s", DataType::Utf8),
            Column::new("b", DataType::Binary),
            Column::new("o", DataType::Bool),
            Column::new("n", DataType::Float64).nullable(),
        ],
    )
    .unwrap();
    let rows = vec![
        vec![
            Value::Timestamp(-5),
            Value::Int64(i64::MIN),
            Value::Float64(f64::NAN),
            Value::Utf8(String::new()),
            Value::Binary(vec![]),
            Value::Bool(false),
            Value::Null,
        ],
        vec![
            Value::Timestamp(1_700_000_000_000_000),
            Value::Int64(i64::MAX),
            Value::Float64(-0.0),
            Value::Utf8("ünïcödé 🚀".into()),
            Value::Binary(vec![0, 1, 255]),
            Value::Bool(true),
            Value::Float64(f64::INFINITY),
        ],
    ];
    {
        let db = open(dir.path(), Durability::Always);
        db.create_table(def.clone()).unwrap();
        db.insert_batch("all", rows.clone()).unwrap();
    }
    let db = open(dir.path(), Durability::Always);
    assert_eq!(db.table_def("all").unwrap(), def);
    assert_eq!(db.scan("all", ..).unwrap(), rows);
}

#[test]
fn table_handle_works() {
    let (_dir, db) = fresh();
    let t = db.table("t").unwrap();
    t.insert(row(1, 1)).unwrap();
    t.insert_batch(vec![row(2, 2), row(3, 3)]).unwrap();
    assert_eq!(t.row_count().unwrap(), 3);
    assert_eq!(t.scan(2..).unwrap(), vec![row(2, 2), row(3, 3)]);
    assert!(matches!(db.table("zz"), Err(Error::TableNotFound { .. })));
}

#[test]
fn closed_database_refuses_nothing_silently() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Durability::Always);
    db.create_table(table_def("t")).unwrap();
    db.insert("t", row(1, 1)).unwrap();
    db.close().unwrap();
    let db = open(dir.path(), Durability::Always);
    assert_eq!(db.get("t", 1).unwrap(), Some(row(1, 1)));
}

#[test]
fn for_each_row_visits_the_range_in_key_order() {
    let (_dir, db) = fresh();
    db.insert_batch("t", (0..100).rev().map(|k| row(k, k * 2)).collect())
        .unwrap();
    let mut keys = Vec::new();
    let mut sum = 0i64;
    db.for_each_row("t", 10..20, |r| {
        assert_eq!(r.value(0).as_i64(), Some(r.key()));
        keys.push(r.key());
        sum += r.value(1).as_i64().unwrap();
    })
    .unwrap();
    assert_eq!(keys, (10..20).collect::<Vec<_>>());
    assert_eq!(sum, (10..20).map(|k| k * 2).sum::<i64>());
    assert!(matches!(
        db.for_each_row("zz", .., |_| {}),
        Err(Error::TableNotFound { .. })
    ));
}

#[test]
fn the_row_store_gives_back_space_after_deletes_and_resized_updates() {
    let (_dir, db) = fresh();
    let wide_v = |k: i64, v: i64, n: usize| {
        vec![
            Value::Int64(k),
            Value::Int64(v),
            Value::Utf8("x".repeat(n)),
            Value::Null,
        ]
    };
    let wide = |k: i64, n: usize| wide_v(k, k, n);
    let rows = 100_000i64;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(10_000) {
        db.insert_batch("t", chunk.iter().map(|&k| wide(k, 100)).collect())
            .unwrap();
    }
    let full = db.row_bytes("t").unwrap();
    assert!(full >= rows as usize * 100, "{full} bytes for {rows} rows");
    // Updates that change a row's length move it; deletes free it.
    for k in (0..rows).filter(|k| k % 4 == 0) {
        db.update("t", k, wide(k, 50)).unwrap();
    }
    for k in (0..rows).filter(|k| k % 4 != 0) {
        assert!(db.delete("t", k).unwrap());
    }
    db.check_invariants().unwrap();
    // The store's bound: at most its live bytes again in free space, or 4 MiB, plus a
    // page. Live: a quarter of the rows, 67 bytes each packed (no key, a null bitmap byte,
    // v, two end offsets, 50 bytes of text).
    let live = rows as usize / 4 * 67;
    let after = db.row_bytes("t").unwrap();
    assert!(
        after <= 2 * live + (4 << 20) + (1 << 20) && after < full / 3,
        "{after} bytes kept for {live} live bytes (was {full})"
    );
    assert_eq!(db.row_count("t").unwrap(), rows as usize / 4);
    for k in (0..rows).step_by(997) {
        let expected = (k % 4 == 0).then(|| wide(k, 50));
        assert_eq!(db.get("t", k).unwrap(), expected, "key {k}");
    }
    // Same-length updates stay in place and reuse nothing new.
    let before = db.row_bytes("t").unwrap();
    for k in (0..rows).step_by(4) {
        db.update("t", k, wide_v(k, k + 1, 50)).unwrap();
    }
    assert_eq!(db.row_bytes("t").unwrap(), before);
    assert_eq!(db.get("t", 8).unwrap(), Some(wide_v(8, 9, 50)));
    db.check_invariants().unwrap();
}

#[test]
fn get_with_reads_in_place_and_matches_get() {
    let (_dir, db) = fresh();
    let full = vec![
        Value::Int64(5),
        Value::Int64(-3),
        Value::Utf8("héllo".into()),
        Value::Binary(vec![0, 1, 2]),
    ];
    let nulls = vec![Value::Int64(6), Value::Int64(0), Value::Null, Value::Null];
    db.insert_batch("t", vec![full.clone(), nulls.clone()])
        .unwrap();
    let read = db
        .get_with("t", 5, |r| {
            (r.key(), r.value(2).as_str().map(str::to_owned), r.to_row())
        })
        .unwrap();
    assert_eq!(read, Some((5, Some("héllo".to_string()), full.clone())));
    assert_eq!(
        db.get_with("t", 6, |r| r.value(3).is_null()).unwrap(),
        Some(true)
    );
    assert_eq!(db.get_with("t", 7, |r| r.key()).unwrap(), None);
    assert_eq!(db.get("t", 6).unwrap(), Some(nulls));
    assert!(matches!(
        db.get_with("zz", 5, |_| ()),
        Err(Error::TableNotFound { .. })
    ));
}

#[test]
fn a_directory_holds_one_open_database_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), Durability::Always);
    first.create_table(table_def("t")).unwrap();
    first.insert("t", row(1, 1)).unwrap();
    match Database::open(dir.path(), omendb::Options::with_sync(Durability::Always)) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("a second open must be refused, got {other:?}"),
    }
    // The refused open changed nothing: the first goes on, and a drop frees the directory.
    first.insert("t", row(2, 2)).unwrap();
    drop(first);
    let second = open(dir.path(), Durability::Always);
    assert_eq!(second.row_count("t").unwrap(), 2);
    // `close` frees it too; another directory was never affected.
    second.close().unwrap();
    let other = tempfile::tempdir().unwrap();
    let _elsewhere = open(other.path(), Durability::Always);
    let third = open(dir.path(), Durability::Always);
    assert_eq!(third.get("t", 2).unwrap(), Some(row(2, 2)));
}

#[test]
fn small_index_limits_keep_every_row_across_reopen() {
    // The BUGGIFY knobs for ALEX: tiny nodes and fanout, so splits and root growth run on
    // a few thousand keys; a reopen with other limits rebuilds the index.
    let dir = tempfile::tempdir().unwrap();
    let small = omendb::Options {
        index_data_node_slots_max: 64,
        index_inner_fanout_max: 4,
        ..omendb::Options::with_sync(Durability::None)
    };
    let db = Database::open(dir.path(), small.clone()).unwrap();
    db.create_table(table_def("t")).unwrap();
    for k in (0..3000).rev() {
        db.insert("t", row(k * 2, k)).unwrap();
    }
    db.check_invariants().unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    for options in [omendb::Options::with_sync(Durability::None), small] {
        let db = Database::open(dir.path(), options).unwrap();
        db.check_invariants().unwrap();
        assert_eq!(db.row_count("t").unwrap(), 3000);
        for k in [0, 1, 2, 2999, 3000, 5998, 5999] {
            let expected = (k % 2 == 0).then(|| row(k, k / 2));
            assert_eq!(db.get("t", k).unwrap(), expected, "key {k}");
        }
        db.insert("t", row(1, 1)).unwrap();
        assert_eq!(db.get("t", 1).unwrap(), Some(row(1, 1)));
        db.delete("t", 1).unwrap();
        db.close().unwrap();
    }
}
