//! A SQLite VFS whose files live on the current thread's simulated disk (`SimFs`).
//!
//! SQLite reaches the operating system only through a VFS; this one sends every call to the
//! `omendb_env::Fs` installed with [`set_disk`] on the calling thread, so a run that opens
//! SQLite with [`VFS_NAME`] sees the simulated disk's crash semantics: unsynced writes,
//! size changes and directory entries lost or torn at a power loss, as the disk's crash
//! model draws them.
//!
//! What it models of the unix VFS, which SQLite's promises are stated against:
//! - `xSync` is `File::sync` (fdatasync); a journal or WAL file created by `xOpen` also has
//!   its directory synced at its first `xSync` (the unix VFS's `UNIXFILE_DIRSYNC`), and
//!   `xDelete` with `syncDir` syncs the directory after the remove;
//! - `xDeviceCharacteristics` claims nothing (no atomic writes, no safe append, no
//!   power-safe overwrite), so SQLite takes its most careful path;
//! - locks are no-ops: one connection per disk, in `locking_mode=EXCLUSIVE`, and no
//!   shared memory (`iVersion` 1 io methods), so WAL mode keeps its index in heap memory.
//!
//! An I/O error (including the disk being frozen by a crash) is `SQLITE_IOERR_*`; a full
//! disk is `SQLITE_FULL`.
//!
//! Time is the generic core's virtual clock (`omendb_simcore::env::SimClock`) installed with
//! [`set_clock`]: `xCurrentTime` reads it and `xSleep` advances it instead of sleeping, so
//! no wall time reaches a run. Without a clock the time is fixed (2025-11-21, the time the
//! VFS reported before it had a clock).

use omendb_env::Clock;
use omendb_env::{File, Fs, OpenMode};
use omendb_faults::SimFs;
use omendb_simcore::env::SimClock;
use rusqlite::ffi;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Once};

/// The name to open SQLite with.
pub const VFS_NAME: &CStr = c"omendb-simfs";

thread_local! {
    static DISK: RefCell<Option<Arc<SimFs>>> = const { RefCell::new(None) };
    static TEMP_COUNTER: RefCell<u64> = const { RefCell::new(0) };
    static CLOCK: RefCell<Option<Arc<SimClock>>> = const { RefCell::new(None) };
}

/// Installs `clock` as this thread's time for the VFS (`xCurrentTime`, `xSleep`).
pub fn set_clock(clock: Option<Arc<SimClock>>) {
    CLOCK.with(|c| *c.borrow_mut() = clock);
}

fn clock() -> Option<Arc<SimClock>> {
    CLOCK.with(|c| c.borrow().clone())
}

/// The Unix epoch as a Julian day number in milliseconds, SQLite's unit of time.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;
/// The time without a clock, 2025-11-21T00:00:00Z (Julian day 2,461,000.5), in milliseconds.
const FIXED_JULIAN_MS: i64 = 212_630_443_200_000;

/// The VFS's time: the installed clock's, or the fixed time.
fn now_julian_ms() -> i64 {
    clock().map_or(FIXED_JULIAN_MS, |clock| {
        UNIX_EPOCH_JULIAN_MS + clock.now_wall_micros() / 1000
    })
}

/// Installs `disk` as this thread's disk for the VFS (and registers the VFS once).
pub fn set_disk(disk: Option<Arc<SimFs>>) {
    register();
    DISK.with(|d| *d.borrow_mut() = disk);
    TEMP_COUNTER.with(|c| *c.borrow_mut() = 0);
}

fn disk() -> Option<Arc<SimFs>> {
    DISK.with(|d| d.borrow().clone())
}

fn register() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: std::mem::size_of::<SimFile>() as c_int,
            mxPathname: 512,
            pNext: ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        // SAFETY: `vfs` is leaked, so it lives as long as SQLite may use it; SQLite only
        // links it into its list.
        unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    });
}

/// SQLite's file object: its `sqlite3_file` header first, then ours.
#[repr(C)]
struct SimFile {
    base: ffi::sqlite3_file,
    state: *mut FileState,
}

struct FileState {
    disk: Arc<SimFs>,
    file: Box<dyn File>,
    path: PathBuf,
    delete_on_close: bool,
    /// Sync the parent directory at the next `xSync` (a journal or WAL just created).
    dir_sync: bool,
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The state behind a file SQLite opened with this VFS.
///
/// # Safety
/// `file` must be a `SimFile` that `x_open` filled and `x_close` has not closed.
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a mut FileState> {
    // SAFETY: per the contract, `file` points at a `SimFile` whose `state` is null or a
    // live `Box<FileState>` owned by it.
    unsafe { (*(file as *mut SimFile)).state.as_mut() }
}

fn path_of(name: *const c_char) -> Option<PathBuf> {
    if name.is_null() {
        return None;
    }
    // SAFETY: SQLite passes NUL-terminated names.
    let text = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    Some(PathBuf::from(if text.starts_with('/') {
        text.to_string()
    } else {
        format!("/{text}")
    }))
}

fn io_code(e: &std::io::Error, code: c_int) -> c_int {
    if e.kind() == std::io::ErrorKind::StorageFull {
        ffi::SQLITE_FULL
    } else {
        code
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite gives `szOsFile` bytes at `file`; mark it unopened first.
    unsafe {
        (*(file as *mut SimFile)).base.pMethods = ptr::null();
        (*(file as *mut SimFile)).state = ptr::null_mut();
    }
    let Some(disk) = disk() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let path = match path_of(name) {
        Some(path) => path,
        None => {
            let n = TEMP_COUNTER.with(|c| {
                let mut c = c.borrow_mut();
                *c += 1;
                *c
            });
            PathBuf::from(format!("/sqlite-temp-{n}"))
        }
    };
    let create = flags & ffi::SQLITE_OPEN_CREATE != 0;
    let mode = if flags & ffi::SQLITE_OPEN_EXCLUSIVE != 0 {
        OpenMode::CreateNew
    } else if create {
        OpenMode::Create
    } else if flags & ffi::SQLITE_OPEN_READWRITE != 0 {
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    let is_new_journal = create
        && flags
            & (ffi::SQLITE_OPEN_MAIN_JOURNAL
                | ffi::SQLITE_OPEN_SUPER_JOURNAL
                | ffi::SQLITE_OPEN_WAL)
            != 0;
    let opened = match disk.open(&path, mode) {
        Ok(opened) => opened,
        Err(_) => return ffi::SQLITE_CANTOPEN,
    };
    let state = Box::new(FileState {
        disk,
        file: opened,
        path,
        delete_on_close: flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0,
        dir_sync: is_new_journal,
    });
    // SAFETY: as above; `out_flags` may be null.
    unsafe {
        (*(file as *mut SimFile)).state = Box::into_raw(state);
        (*(file as *mut SimFile)).base.pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a `SimFile` (SQLite calls xClose once per successful open).
    let raw = unsafe { std::mem::replace(&mut (*(file as *mut SimFile)).state, ptr::null_mut()) };
    if raw.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `raw` came from `Box::into_raw` in `x_open` and is taken out once.
    let state = unsafe { Box::from_raw(raw) };
    if state.delete_on_close {
        let _ = state.disk.remove(&state.path);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: per the io methods' contract.
    let Some(state) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_READ;
    };
    // SAFETY: SQLite passes a buffer of `amount` bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, amount.max(0) as usize) };
    let mut done = 0;
    while done < buf.len() {
        match state
            .file
            .read_at(&mut buf[done..], offset as u64 + done as u64)
        {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) => return ffi::SQLITE_IOERR_READ,
        }
    }
    if done < buf.len() {
        buf[done..].fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: per the io methods' contract.
    let Some(state) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: SQLite passes a buffer of `amount` bytes.
    let buf = unsafe { std::slice::from_raw_parts(buf as *const u8, amount.max(0) as usize) };
    match state.file.write_at(buf, offset as u64) {
        Ok(()) => ffi::SQLITE_OK,
        Err(e) => io_code(&e, ffi::SQLITE_IOERR_WRITE),
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: per the io methods' contract.
    let Some(state) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    match state.file.set_len(size.max(0) as u64) {
        Ok(()) => ffi::SQLITE_OK,
        Err(e) => io_code(&e, ffi::SQLITE_IOERR_TRUNCATE),
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: per the io methods' contract.
    let Some(state) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_FSYNC;
    };
    if state.file.sync().is_err() {
        return ffi::SQLITE_IOERR_FSYNC;
    }
    if state.dir_sync {
        let dir = state.path.parent().unwrap_or(Path::new("/"));
        if state.disk.sync_dir(dir).is_err() {
            return ffi::SQLITE_IOERR_DIR_FSYNC;
        }
        state.dir_sync = false;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: per the io methods' contract.
    let Some(state) = (unsafe { state(file) }) else {
        return ffi::SQLITE_IOERR_FSTAT;
    };
    match state.file.len() {
        Ok(len) => {
            // SAFETY: SQLite passes a valid out pointer.
            unsafe { *size = len as ffi::sqlite3_int64 };
            ffi::SQLITE_OK
        }
        Err(_) => ffi::SQLITE_IOERR_FSTAT,
    }
}

unsafe extern "C" fn x_lock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(
    _file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a valid out pointer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _file: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the io methods' contract.
    match unsafe { state(file) } {
        Some(state) => state.disk.plan().sector_bytes as c_int,
        None => 4096,
    }
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let (Some(disk), Some(path)) = (disk(), path_of(name)) else {
        return ffi::SQLITE_IOERR_DELETE;
    };
    match disk.remove(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ffi::SQLITE_IOERR_DELETE_NOENT
        }
        Err(_) => return ffi::SQLITE_IOERR_DELETE,
    }
    if sync_dir != 0 {
        let dir = path.parent().unwrap_or(Path::new("/"));
        if disk.sync_dir(dir).is_err() {
            return ffi::SQLITE_IOERR_DIR_FSYNC;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    let (Some(disk), Some(path)) = (disk(), path_of(name)) else {
        return ffi::SQLITE_IOERR_ACCESS;
    };
    match disk.exists(&path) {
        Ok(exists) => {
            // SAFETY: SQLite passes a valid out pointer.
            unsafe { *out = c_int::from(exists) };
            ffi::SQLITE_OK
        }
        Err(_) => ffi::SQLITE_IOERR_ACCESS,
    }
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    let Some(path) = path_of(name) else {
        return ffi::SQLITE_CANTOPEN;
    };
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    if bytes.len() + 1 > n_out.max(0) as usize {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: `out` holds `n_out` bytes, checked above.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, bytes.len());
        *out.add(bytes.len()) = 0;
    }
    ffi::SQLITE_OK
}

/// SQLite seeds its PRNG from the default VFS, not this one; the runner reseeds it per run
/// (`SQLITE_TESTCTRL_PRNG_SEED`). Zeros here keep anything else that asks deterministic.
unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `out` holds `n` bytes.
    unsafe { ptr::write_bytes(out, 0, n.max(0) as usize) };
    n
}

/// Advances the virtual clock instead of sleeping.
unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    if let Some(clock) = clock() {
        clock.sleep(std::time::Duration::from_micros(
            u64::try_from(micros).unwrap_or(0),
        ));
    }
    micros
}

/// The virtual clock's time, in Julian days.
unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: SQLite passes a valid out pointer.
    unsafe { *out = now_julian_ms() as f64 / 86_400_000.0 };
    ffi::SQLITE_OK
}

/// The virtual clock's time, in Julian-day milliseconds.
unsafe extern "C" fn x_current_time_int64(
    _vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes a valid out pointer.
    unsafe { *out = now_julian_ms() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _n: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}
