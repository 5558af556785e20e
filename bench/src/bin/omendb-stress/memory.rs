//! The process's own figures, read without the engine: resident memory (/proc/self/statm),
//! heap in use (glibc's `mallinfo2`), the bytes the program holds allocated (a counting
//! global allocator, `--live-heap`) and CPU time (/proc/self/stat).

/// glibc's `struct mallinfo2` (glibc 2.33 and later).
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

extern "C" {
    fn mallinfo2() -> MallInfo2;
}

/// Bytes the program has allocated and not freed (glibc's in-use arena bytes plus mmapped
/// blocks), in KiB. RSS minus this is memory the allocator holds free: growth of this is a
/// leak, growth of RSS alone is the allocator's fragmentation.
pub fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
    let info = unsafe { mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

/// Bytes the program holds allocated, exactly as it asked for them (`Layout::size`), kept by a
/// counting global allocator over the system one once `--live-heap` switches it on. Unlike
/// `mallinfo2`, which counts as in use every chunk glibc has not put back in its bins (chunks
/// parked in the per-thread caches included: up to 7 of each size class up to 1 KiB per
/// thread), this moves only when the program's own data grows or shrinks.
pub mod live_heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

    /// Counters on separate cache lines, so that threads on different cores rarely write
    /// the same one; a thread keeps its shard for life.
    const SHARDS: usize = 64;

    #[repr(align(128))]
    struct Shard(AtomicIsize);

    static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];
    static ENABLED: AtomicBool = AtomicBool::new(false);
    static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        // Constant-initialised and without a destructor: reading it never allocates.
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    #[inline]
    fn add(delta: isize) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let shard = SHARD
            .try_with(|cell| {
                let mut shard = cell.get();
                if shard == usize::MAX {
                    shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                    cell.set(shard);
                }
                shard
            })
            .unwrap_or(0);
        COUNTS[shard].0.fetch_add(delta, Ordering::Relaxed);
    }

    pub struct Counting;

    // SAFETY: every call is forwarded to the system allocator unchanged; the counting only
    // adds to atomics and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc` is passed on as it is.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                add(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as for `alloc`.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                add(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as for `dealloc`; on failure the old block is left as it was.
            let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
            if !new_ptr.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            new_ptr
        }
    }

    /// Starts counting; blocks allocated before and freed after make the figure low by
    /// their size (a few KiB of argument parsing).
    pub fn enable() {
        ENABLED.store(true, Ordering::Relaxed);
    }

    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// Bytes allocated and not freed since `enable`, in KiB.
    pub fn kib() -> u64 {
        let bytes: isize = COUNTS
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .sum();
        (bytes.max(0) / 1024) as u64
    }
}

pub fn rss_kib() -> u64 {
    // /proc/self/statm: size resident shared text lib data dt, in pages.
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4 // 4 KiB pages on x86-64 Linux
}

/// CPU time of the whole process so far (user + system), from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) end at the last ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}
