//! Bounded reads of the files credentials come from: `password_file`, `token_file` and the
//! Docker config.
//!
//! Owns how such a file is read: off the async workers (on the verdict pool, never tokio's
//! blocking pool, which serving shares: [`on_verdict_pool`]), within
//! [`READ_TIMEOUT`], only if it is a regular file (a symlink to one is fine, as Kubernetes
//! secret volumes are), and at most [`MAX_FILE_BYTES`]. A FIFO, a device such as
//! `/dev/zero` or a file on a hung network mount therefore costs one prompt error, never a
//! stalled worker or the process's memory. A leaf: it imports nothing from the crate and
//! knows nothing of what the bytes mean.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one read may take: a local file is read in microseconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A secret or a Docker config is small; anything larger is refused.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why a file could not be used. Its text names the problem, never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// A FIFO, a socket, a device or a directory.
    NotRegular(&'static str),
    TooLarge,
    TimedOut,
    /// An earlier read of the same file outlived its timeout and has not returned.
    StillHung,
    Io(std::io::ErrorKind),
}

impl FileProblem {
    /// What to do about it, in words for the operator.
    pub fn fix(&self) -> &'static str {
        match self {
            FileProblem::NotRegular(_) => {
                "point it at a regular file (a symlink to one, as in Kubernetes secret volumes, is fine)"
            }
            FileProblem::TooLarge => {
                "a secret or a Docker config is a few hundred bytes: check that the path names the right file"
            }
            FileProblem::TimedOut | FileProblem::StillHung => {
                "check the file system it is on (a hung network mount?)"
            }
            FileProblem::Io(_) => "check that the file exists and is readable by the exporter",
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            FileProblem::TooLarge => write!(f, "it is larger than {} KiB", MAX_FILE_BYTES / 1024),
            FileProblem::TimedOut => {
                write!(f, "reading it took longer than {}s", READ_TIMEOUT.as_secs())
            }
            FileProblem::StillHung => write!(
                f,
                "an earlier read has been stuck for more than {}s",
                READ_TIMEOUT.as_secs()
            ),
            FileProblem::Io(kind) => write!(f, "{kind}"),
        }
    }
}

/// Runs `work` on the verdict pool and awaits its result (`None` if the pool could not run
/// it or `work` panicked). Not on tokio's blocking pool: that pool also serves the HTTP
/// endpoints' work, and what decides a verdict (a secret read, a bcrypt verification) must
/// never queue behind it (a flood of scrapes made healthy registries report
/// `secret_unreadable`). The verdict pool is the blocking pool of a runtime of its own,
/// which keeps its threads for reuse (10 s idle) and has at most [`VERDICT_THREADS`];
/// callers bound how many run at once: a read per secret file and check (one at most per
/// hung file, see [`StillHung`](FileProblem::StillHung)), the bcrypt gate's few
/// verifications.
pub async fn on_verdict_pool<T, F>(work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    verdict_pool()?.spawn_blocking(work).await.ok()
}

/// Builds the verdict pool now rather than at its first use, which a first check or login
/// would otherwise wait for.
pub fn start_verdict_pool() {
    // And one thread of it, which stays for reuse a while (its first task need not start one).
    if let Some(pool) = verdict_pool() {
        drop(pool.spawn_blocking(|| ()));
    }
}

/// The most threads the verdict pool runs at once.
pub const VERDICT_THREADS: usize = 64;

/// The verdict pool's runtime, built at first use (`None` if it cannot be: the process's
/// thread limit).
fn verdict_pool() -> Option<&'static tokio::runtime::Runtime> {
    static POOL: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            // Only its blocking pool is used; one worker, parked.
            .worker_threads(1)
            .max_blocking_threads(VERDICT_THREADS)
            .thread_name("verdict-io")
            .build()
            .ok()
    })
    .as_ref()
}

/// Reads `path` on the verdict pool ([`on_verdict_pool`]), within [`READ_TIMEOUT`]. For async
/// code.
pub async fn read(path: &Path) -> Result<Vec<u8>, FileProblem> {
    let read = Read::start(path)?;
    let path = path.to_path_buf();
    let settled = read.settled.clone();
    let task = on_verdict_pool(move || {
        let result = read_regular(&path);
        finish(&path, &settled);
        result
    });
    match tokio::time::timeout(READ_TIMEOUT, task).await {
        Ok(Some(result)) => result,
        // The thread could not start (the process's thread limit), or the read panicked.
        Ok(None) => Err(FileProblem::Io(std::io::ErrorKind::Other)),
        Err(_) => Err(read.timed_out()),
    }
}

/// Reads `path` on a helper thread, waiting at most [`READ_TIMEOUT`]. For synchronous
/// code (`Config::resolve`); it blocks the caller, so async code uses [`read`].
pub fn read_blocking(path: &Path) -> Result<Vec<u8>, FileProblem> {
    let read = Read::start(path)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let owned = path.to_path_buf();
    let settled = read.settled.clone();
    let spawned = std::thread::Builder::new()
        .name("secret-file-read".into())
        .spawn(move || {
            let result = read_regular(&owned);
            finish(&owned, &settled);
            // The receiver may have given up (timeout): nothing to tell then.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        finish(path, &read.settled);
        return Err(FileProblem::Io(e.kind()));
    }
    match rx.recv_timeout(READ_TIMEOUT) {
        Ok(result) => result,
        Err(_) => Err(read.timed_out()),
    }
}

/// Files whose read outlived its timeout and has not returned, with how many such reads.
/// A new read of such a file fails at once, so a hung mount holds one thread per file,
/// not one per check run.
fn stuck() -> &'static Mutex<HashMap<PathBuf, usize>> {
    static STUCK: std::sync::OnceLock<Mutex<HashMap<PathBuf, usize>>> = std::sync::OnceLock::new();
    STUCK.get_or_init(Default::default)
}

fn lock_stuck() -> std::sync::MutexGuard<'static, HashMap<PathBuf, usize>> {
    // Nothing under this lock can panic half-way; recover from poisoning all the same.
    stuck().lock().unwrap_or_else(|p| p.into_inner())
}

/// One read in flight.
struct Read {
    path: PathBuf,
    /// Set by the first of the reading thread (it returned) and the waiter (it gave up),
    /// under the stuck lock: a reading thread that finds it set returns second, after its
    /// waiter marked the file stuck, and unmarks it.
    settled: Arc<AtomicBool>,
}

impl Read {
    fn start(path: &Path) -> Result<Read, FileProblem> {
        if lock_stuck().contains_key(path) {
            return Err(FileProblem::StillHung);
        }
        Ok(Read {
            path: path.to_path_buf(),
            settled: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The caller gave up waiting: unless the thread has just returned, mark the file stuck.
    fn timed_out(self) -> FileProblem {
        let mut stuck = lock_stuck();
        if !self.settled.swap(true, Ordering::AcqRel) {
            *stuck.entry(self.path).or_default() += 1;
        }
        FileProblem::TimedOut
    }
}

/// Called by the reading thread when it returns.
fn finish(path: &Path, settled: &AtomicBool) {
    let mut stuck = lock_stuck();
    // True: the waiter gave up first and counted this read as stuck.
    if settled.swap(true, Ordering::AcqRel)
        && let Some(n) = stuck.get_mut(path)
    {
        *n -= 1;
        if *n == 0 {
            stuck.remove(path);
        }
    }
}

/// The blocking read itself: a regular file (symlinks followed), at most
/// [`MAX_FILE_BYTES`].
fn read_regular(path: &Path) -> Result<Vec<u8>, FileProblem> {
    let io = |e: std::io::Error| FileProblem::Io(e.kind());
    // Checked before opening: opening a FIFO blocks until a writer comes.
    check_type(&std::fs::metadata(path).map_err(io)?)?;
    // O_NONBLOCK: should a FIFO be swapped in after the check, the open still returns.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check_type(&meta)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(FileProblem::TooLarge);
    }
    let mut out = Vec::new();
    // One byte past the limit tells a file that grew since the check from one that fits.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(io)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(FileProblem::TooLarge);
    }
    Ok(out)
}

fn check_type(meta: &std::fs::Metadata) -> Result<(), FileProblem> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    };
    Err(FileProblem::NotRegular(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "pw\n").unwrap();
        assert_eq!(read_blocking(&file).unwrap(), b"pw\n");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_blocking(&link).unwrap(), b"pw\n");
        assert_eq!(
            read_blocking(Path::new("/dev/zero")),
            Err(FileProblem::NotRegular("character device"))
        );
        assert_eq!(
            read_blocking(dir.path()),
            Err(FileProblem::NotRegular("directory"))
        );
        std::fs::write(&file, vec![b'x'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(read_blocking(&file), Err(FileProblem::TooLarge));
        assert!(matches!(
            read_blocking(&dir.path().join("missing")),
            Err(FileProblem::Io(std::io::ErrorKind::NotFound))
        ));
    }

    #[test]
    fn a_read_that_outlives_its_timeout_marks_the_file_until_it_returns() {
        let path = Path::new("/hung/mount/secret");
        let read = Read::start(path).unwrap();
        let settled = read.settled.clone();
        assert_eq!(read.timed_out(), FileProblem::TimedOut);
        assert_eq!(Read::start(path).err(), Some(FileProblem::StillHung));
        // The stuck thread returns at last: the file may be tried again.
        finish(path, &settled);
        assert!(Read::start(path).is_ok());
        // A read that returns before its waiter gives up leaves nothing behind.
        let read = Read::start(path).unwrap();
        finish(path, &read.settled);
        read.timed_out();
        assert!(Read::start(path).is_ok());
    }
}
