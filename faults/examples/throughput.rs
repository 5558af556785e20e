//! Measures how many I/O calls per second the simulated disk sustains, on a WAL-like mix
//! (small appends, a sync every 8, reads of recent records) and on random 4 KiB page
//! writes, with faults off and with a storm of faults (crashes aside), plus the cost of a
//! restart. Run: `cargo run --release -p omendb-faults --example throughput`.
//!
//! This is a measurement, not a test: it uses the wall clock only to report.

use omendb_env::{File, Fs, OpenMode};
use omendb_faults::{FaultPlan, SimFs};
use std::path::Path;
use std::time::Instant;

const CALLS: u64 = 2_000_000;

fn storm() -> FaultPlan {
    FaultPlan {
        read_error: 0.01,
        read_latent: 0.0001,
        write_error: 0.01,
        write_torn: 0.01,
        write_torn_acked: 0.001,
        write_misdirected: 0.001,
        sync_error: 0.01,
        sync_dir_error: 0.01,
        bit_flip: 0.0001,
        ..FaultPlan::none()
    }
}

/// Appends of 100 bytes, a sync every 8, a read of the last record every 4; a new
/// segment every 64 MiB keeps memory bounded.
fn wal(fs: &SimFs) -> u64 {
    fs.create_dir(Path::new("/db/wal")).unwrap();
    let record = [7u8; 100];
    let mut buf = [0u8; 100];
    let mut segment = 0u64;
    let mut file = fs.open(Path::new("/db/wal/0"), OpenMode::Create).unwrap();
    let mut offset = 0u64;
    let start = fs.op_count();
    let mut i = 0u64;
    while fs.op_count() - start < CALLS {
        let _ = file.write_at(&record, offset);
        offset += record.len() as u64;
        if i % 8 == 7 {
            let _ = file.sync();
        }
        if i % 4 == 3 {
            let _ = file.read_at(&mut buf, offset - 100);
        }
        if offset >= 64 << 20 {
            segment += 1;
            let _ = fs.remove(Path::new(&format!("/db/wal/{}", segment - 1)));
            file = fs
                .open(Path::new(&format!("/db/wal/{segment}")), OpenMode::Create)
                .unwrap();
            let _ = fs.sync_dir(Path::new("/db/wal"));
            offset = 0;
        }
        i += 1;
    }
    fs.op_count() - start
}

/// Random 4 KiB page writes over a 64 MiB file, a sync every 16, a page read every 2.
fn pages(fs: &SimFs) -> u64 {
    let file: Box<dyn File> = fs.open(Path::new("/pages"), OpenMode::Create).unwrap();
    let page = [3u8; 4096];
    let mut buf = [0u8; 4096];
    let pages_max = (64 << 20) / 4096;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let start = fs.op_count();
    let mut i = 0u64;
    while fs.op_count() - start < CALLS / 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % pages_max) * 4096;
        let _ = file.write_at(&page, at);
        if i % 16 == 15 {
            let _ = file.sync();
        }
        if i % 2 == 1 {
            let _ = file.read_at(&mut buf, at);
        }
        i += 1;
    }
    fs.op_count() - start
}

fn measure(name: &str, plan: FaultPlan, run: fn(&SimFs) -> u64) {
    let fs = SimFs::new(plan);
    let started = Instant::now();
    let calls = run(&fs);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name:<22} {calls:>9} calls in {seconds:>6.3} s = {:>10.0} calls/s  ({} faults)",
        calls as f64 / seconds,
        fs.stats().faults_total()
    );
}

fn main() {
    measure("wal, no faults", FaultPlan::none(), wal);
    measure("wal, storm", storm(), wal);
    measure("4k pages, no faults", FaultPlan::none(), pages);
    measure("4k pages, storm", storm(), pages);

    // A restart with 64 MiB durable and 8 MiB unsynced over 2,048 writes.
    let fs = SimFs::calm(1);
    let file = fs.open(Path::new("/big"), OpenMode::Create).unwrap();
    file.write_at(&vec![1u8; 64 << 20], 0).unwrap();
    file.sync().unwrap();
    for i in 0..2048u64 {
        file.write_at(&[2u8; 4096], i * 4096 * 7 % (64 << 20))
            .unwrap();
    }
    let started = Instant::now();
    fs.restart();
    println!(
        "restart, 64 MiB file with 2048 unsynced 4 KiB writes: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}
