//! Group commit on a real disk: concurrent writers with Durability::Always all get acknowledged,
//! share fsyncs, and every acknowledged row is there after a reopen.

mod common;

use common::*;
use omendb::Durability;
use std::sync::Arc;

#[test]
fn concurrent_writers_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 8i64;
    let per_thread = 50i64;
    {
        let db = Arc::new(open(dir.path(), Durability::Always));
        db.create_table(table_def("t")).unwrap();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        let k = t * 1000 + i;
                        db.insert("t", row(k, k)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let lsns = db.lsns();
        assert_eq!(
            lsns.appended, lsns.durable,
            "every acknowledged write is durable"
        );
        assert_eq!(lsns.appended, 1 + (threads * per_thread) as u64);
    }
    let db = open(dir.path(), Durability::Always);
    assert_eq!(db.row_count("t").unwrap(), (threads * per_thread) as usize);
    for t in 0..threads {
        for i in 0..per_thread {
            let k = t * 1000 + i;
            assert_eq!(db.get("t", k).unwrap(), Some(row(k, k)));
        }
    }
}

#[test]
fn submit_then_worker_acknowledges() {
    // The non-blocking half of the pipeline: submit several writes, then wait on the last
    // ticket; one sync covers all of them.
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Durability::Always);
    db.create_table(table_def("t")).unwrap();
    let tickets: Vec<_> = (0..10)
        .map(|k| {
            db.submit(omendb::Write::Insert {
                table: "t".into(),
                rows: vec![row(k, k)],
            })
            .unwrap()
        })
        .collect();
    // Visible before acknowledged.
    assert_eq!(db.row_count("t").unwrap(), 10);
    let last = *tickets.last().unwrap();
    db.wait(last).unwrap();
    for t in tickets {
        assert!(db.is_acknowledged(t).unwrap());
    }
}

#[test]
fn a_ticket_from_before_a_reopen_is_refused_not_waited_on_forever() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Durability::Always);
    db.create_table(table_def("t")).unwrap();
    let ticket = db
        .submit(omendb::Write::Insert {
            table: "t".into(),
            rows: vec![row(1, 1)],
        })
        .unwrap();
    db.wait(ticket).unwrap();
    drop(db);
    // The reopened log starts after a checkpoint; a second database on a fresh directory
    // has written less than the ticket's LSN.
    let other = tempfile::tempdir().unwrap();
    let db = open(other.path(), Durability::Always);
    assert!(matches!(
        db.wait(ticket),
        Err(omendb::Error::InvalidTicket { .. })
    ));
    assert!(matches!(
        db.is_acknowledged(ticket),
        Err(omendb::Error::InvalidTicket { .. })
    ));
}
