//! Probe counters are per thread: a sweep runs seeds on several threads at once, and each
//! run must read only its own hits.

#[test]
fn counts_are_per_thread() {
    omendb_env::probe::reset();
    omendb_env::probe!("a.here");
    std::thread::spawn(|| omendb_env::probe!("a.there"))
        .join()
        .expect("thread");
    assert_eq!(omendb_env::probe::counts(), vec![("a.here", 1)]);
}
