//! Memory hints: transparent huge pages for the large arrays a point read lands in.
//!
//! A point read is two or three dependent cache misses at random places in hundreds of MiB
//! (the index's slot arrays, then the row store's pages). With 4 KiB pages each miss is also
//! a TLB miss and a page walk, which in a virtual machine walks two page tables. Backing those
//! arrays with 2 MiB pages takes most of the walks away. The kernel is asked per region with
//! `madvise(MADV_HUGEPAGE)`, which works when THP is in `madvise` mode (the usual default) as
//! well as `always`, and is a no-op when THP is off.
//!
//! This is the engine's one direct OS call outside `env/`: it changes how the kernel backs
//! memory, never what the memory holds or any result, so it needs no simulated double and
//! does not affect the simulator's determinism.

/// Size of a transparent huge page on x86-64 and most aarch64 kernels.
pub(crate) const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Buffers whose capacity is below this are not advised: they would hold at most one whole
/// huge page, and small tables should not pay 2 MiB of resident memory each.
pub(crate) const ADVISE_BYTES_MIN: usize = 4 << 20;

/// Asks for huge pages under the whole 2 MiB pages inside `buf`'s allocation (its capacity,
/// used or not). Call it before the memory is first written: a page already faulted in as
/// small pages is only merged later, if at all.
pub(crate) fn advise_huge_pages<T>(buf: &Vec<T>) {
    let bytes = buf.capacity().saturating_mul(std::mem::size_of::<T>());
    if bytes < ADVISE_BYTES_MIN {
        return;
    }
    let start = (buf.as_ptr() as usize).next_multiple_of(HUGE_PAGE_BYTES);
    let end = (buf.as_ptr() as usize + bytes) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if end > start {
        advise(start, end - start);
    }
}

#[cfg(target_os = "linux")]
fn advise(start: usize, len: usize) {
    // SAFETY: `start..start + len` is page-aligned and lies inside one live allocation that
    // the caller owns (a Vec's buffer). MADV_HUGEPAGE only changes how the kernel backs the
    // range; it never unmaps it or changes its contents, so no reference into it is affected.
    // The result is ignored: the advice is optional (THP may be off or unsupported).
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: usize, _len: usize) {}

/// Asks the CPU to start loading the cache line holding `value`, so that a later read of it
/// overlaps with other work instead of stalling on memory. A hint only: a prefetch never
/// faults, never changes memory, and may be dropped by the CPU.
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `value` is a live reference, so the address is valid; a prefetch reads
        // nothing into the program and cannot fault even on an invalid address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_buffers_keep_their_contents() {
        for len in [0usize, 1, ADVISE_BYTES_MIN - 1, ADVISE_BYTES_MIN, 9 << 20] {
            let mut buf: Vec<u8> = Vec::with_capacity(len);
            advise_huge_pages(&buf);
            buf.extend((0..len).map(|i| (i % 251) as u8));
            advise_huge_pages(&buf);
            assert!(buf.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        }
    }
}
