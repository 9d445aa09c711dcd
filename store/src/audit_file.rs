//! The audit file (`POOL_AUDIT_ENABLED`, `POOL_AUDIT_LOG_PATH`): every audit row this process
//! commits is also appended to a file as one JSON line — the row as `GET /api/audit` shows it
//! (see `AuditRecord::line`) — for log shippers and for an audit trail outside the database.
//!
//! - Only committed rows: the store hands a record over after its transaction committed.
//! - Off the request path: [`AuditFile::append`] puts the line in a bounded queue
//!   ([`AUDIT_QUEUE`] lines) and never waits; one thread (`audit-file`) writes what is queued
//!   (at most [`BATCH`] lines at a time) with one `write` on a file opened `O_APPEND`, then
//!   `sync_data`, so a line is on disk before the next batch starts. A line that finds the queue
//!   full (the disk stalled for thousands of changes) is dropped with a warning that counts the
//!   lines dropped so far; the row itself is in the table regardless.
//! - Rotation: SIGHUP reopens the file (logrotate `create` + `postrotate kill -HUP`), and before
//!   each batch the writer checks that the path still names the file it holds (device and inode):
//!   a file renamed or removed is replaced by a new one at the path without a signal.
//!   `copytruncate` needs nothing (appends go to the new end). A failed write is retried once on a
//!   freshly opened file; lines that still fail are logged as lost (with a running count).
//! - Start-up opens (creates, mode 0640) the file at once, so an unwritable path is a
//!   configuration error naming `POOL_AUDIT_LOG_PATH` ([`AuditFile::from_config`]).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use poolgate_shared::config::{keys, AuditSettings, ConfigError};

/// Lines queued for the writer at most; a line beyond is dropped with a warning.
pub const AUDIT_QUEUE: usize = 4096;
/// Lines written (and synced) together at most.
const BATCH: usize = 256;
/// How long [`AuditFile::flush`] waits for the queue to reach the disk.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Permissions of a created audit file (it names people).
const MODE: u32 = 0o640;

enum Msg {
    Line(String),
    Reopen,
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit file's writer; cheap to clone. The writer stops when the last handle is
/// dropped, after writing what was queued.
#[derive(Clone)]
pub struct AuditFile {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    path: PathBuf,
    dropped: AtomicU64,
    /// Times the writer opened the path again (SIGHUP, rotation, failed writes).
    reopened: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFile").field("path", &self.inner.path).finish()
    }
}

impl AuditFile {
    /// The writer `settings` ask for: `None` when `POOL_AUDIT_ENABLED` is false; an error naming
    /// `POOL_AUDIT_LOG_PATH` and the path when the file cannot be opened for appending. Call it
    /// inside the runtime (it listens for SIGHUP).
    pub fn from_config(settings: &AuditSettings) -> Result<Option<AuditFile>, ConfigError> {
        if !settings.enabled {
            return Ok(None);
        }
        AuditFile::open(&settings.log_path).map(Some).map_err(|e| ConfigError::Invalid {
            key: keys::POOL_AUDIT_LOG_PATH.env.to_owned(),
            rule: format!(
                "cannot open {} for appending: {e} (POOL_AUDIT_ENABLED is true: fix the path or its permissions, or disable the audit file)",
                settings.log_path.display()
            ),
        })
    }

    /// Opens (creating) `path` for appending and starts its writer; reopens it on SIGHUP when
    /// called inside a Tokio runtime.
    pub fn open(path: &Path) -> std::io::Result<AuditFile> {
        let reopened = Arc::new(AtomicU64::new(0));
        let writer = Writer::open(path, reopened.clone())?;
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        std::thread::Builder::new()
            .name("audit-file".to_owned())
            .spawn(move || writer.run(rx))?;
        if tokio::runtime::Handle::try_current().is_ok() {
            listen_for_hangup(tx.downgrade(), path);
        }
        Ok(AuditFile {
            inner: Arc::new(Inner {
                tx,
                path: path.to_owned(),
                dropped: AtomicU64::new(0),
                reopened,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues one line (without its newline); never waits.
    pub fn append(&self, line: String) {
        let why = match self.inner.tx.try_send(Msg::Line(line)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the writer is behind (the disk does not keep up)",
            Err(TrySendError::Closed(_)) => "the writer stopped",
        };
        let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            path = %self.inner.path.display(),
            dropped_total = dropped,
            "audit file: line dropped, {why}; the change is in the admin_audit_log table"
        );
    }

    /// Lines dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Times the file was opened again since start (SIGHUP, rotation, a failed write).
    pub fn reopened(&self) -> u64 {
        self.inner.reopened.load(Ordering::Relaxed)
    }

    /// Closes the file and opens the path again, after the lines queued before (what SIGHUP does).
    pub fn reopen(&self) {
        // A full queue means the writer is busy; it checks the path before its next batch anyway.
        let _ = self.inner.tx.try_send(Msg::Reopen);
    }

    /// Waits (up to 5 s) until every line queued before is on disk; false if it did not happen.
    pub async fn flush(&self) -> bool {
        let (ack, done) = oneshot::channel();
        tokio::time::timeout(FLUSH_WAIT, async {
            self.inner.tx.send(Msg::Flush(ack)).await.is_ok() && done.await.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// On each SIGHUP, asks the writer to reopen its file; ends with the writer.
fn listen_for_hangup(tx: mpsc::WeakSender<Msg>, path: &Path) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let Some(tx) = tx.upgrade() else { break };
                    let _ = tx.send(Msg::Reopen).await;
                }
            });
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e,
            "audit file: cannot listen for SIGHUP; a rotated file is still noticed before the next write"),
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, (u64, u64))> {
    let file = OpenOptions::new().append(true).create(true).mode(MODE).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, (meta.dev(), meta.ino())))
}

/// The writer thread's state: the open file and which file it is.
struct Writer {
    path: PathBuf,
    file: File,
    id: (u64, u64),
    lost: u64,
    reopened: Arc<AtomicU64>,
}

impl Writer {
    fn open(path: &Path, reopened: Arc<AtomicU64>) -> std::io::Result<Writer> {
        let (file, id) = open_append(path)?;
        Ok(Writer {
            path: path.to_owned(),
            file,
            id,
            lost: 0,
            reopened,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(first) = rx.blocking_recv() {
            let (mut buf, mut lines, mut acks) = (String::new(), 0, Vec::new());
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Line(line) => {
                        buf.push_str(&line);
                        buf.push('\n');
                        lines += 1;
                    }
                    Msg::Reopen => {
                        self.write(&buf, lines);
                        (buf, lines) = (String::new(), 0);
                        self.reopen("reopened (SIGHUP)");
                    }
                    Msg::Flush(ack) => acks.push(ack),
                }
                taken += 1;
                if taken < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.write(&buf, lines);
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }

    /// Appends `buf` (`lines` lines) durably, to a new file if the path names another one now.
    fn write(&mut self, buf: &str, lines: u64) {
        if lines == 0 {
            return;
        }
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if current != Some(self.id) {
            self.reopen("rotated away: new file opened");
        }
        let mut written = self.append(buf);
        if let Err(e) = &written {
            tracing::warn!(path = %self.path.display(), error = %e, "audit file: write failed; retrying on a reopened file");
            self.reopen("reopened after a failed write");
            written = self.append(buf);
        }
        if let Err(e) = written {
            self.lost += lines;
            tracing::error!(path = %self.path.display(), error = %e, lines, lost_total = self.lost,
                "audit file: lines not written; the changes are in the admin_audit_log table");
        }
    }

    fn append(&mut self, buf: &str) -> std::io::Result<()> {
        self.file.write_all(buf.as_bytes())?;
        self.file.sync_data()
    }

    fn reopen(&mut self, what: &str) {
        match open_append(&self.path) {
            Ok((file, id)) => {
                (self.file, self.id) = (file, id);
                self.reopened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %self.path.display(), "audit file {what}");
            }
            // Keep the old file: lines still reach a disk, and the next write tries again.
            Err(e) => tracing::error!(path = %self.path.display(), error = %e,
                "audit file: cannot reopen; still writing to the file opened before"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("poolgate-audit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn lines_are_appended_and_follow_rotation() {
        let dir = temp_dir();
        let path = dir.join("audit.log");
        std::fs::write(&path, "old\n").expect("existing file");
        let file = AuditFile::open(&path).expect("opens");
        file.append("a".into());
        file.append("b".into());
        assert!(file.flush().await);
        assert_eq!(lines(&path), ["old", "a", "b"], "appended, never truncated");

        // Renamed away (logrotate without a signal): the next line starts a new file.
        std::fs::rename(&path, dir.join("audit.log.1")).expect("rename");
        file.append("c".into());
        assert!(file.flush().await);
        assert_eq!(lines(&dir.join("audit.log.1")), ["old", "a", "b"]);
        assert_eq!(lines(&path), ["c"]);

        // Removed: the same.
        std::fs::remove_file(&path).expect("remove");
        file.append("d".into());
        assert!(file.flush().await);
        assert_eq!(lines(&path), ["d"]);

        assert_eq!(file.reopened(), 2);

        // An explicit reopen (what SIGHUP does) of the same path: the lines go on in order.
        file.append("e".into());
        file.reopen();
        file.append("f".into());
        assert!(file.flush().await);
        assert_eq!(file.reopened(), 3);
        assert_eq!(lines(&path), ["d", "e", "f"]);

        // copytruncate: appends continue at the new end.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        file.append("g".into());
        assert!(file.flush().await);
        assert_eq!(lines(&path), ["g"]);
        assert_eq!(file.reopened(), 3);
        assert_eq!(file.dropped(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn sighup_reopens_the_file() {
        let dir = temp_dir();
        let path = dir.join("audit.log");
        let file = AuditFile::open(&path).expect("opens");
        file.append("before".into());
        assert!(file.flush().await);
        assert_eq!(file.reopened(), 0);
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        // Delivered asynchronously: wait until the writer reopened the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while file.reopened() == 0 {
            assert!(std::time::Instant::now() < deadline, "SIGHUP did not reopen the file");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        file.append("after".into());
        assert!(file.flush().await);
        assert_eq!(lines(&path), ["before", "after"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_unwritable_path_is_a_configuration_error() {
        let dir = temp_dir();
        for bad in [dir.join("missing-dir/audit.log"), dir.clone()] {
            let settings = AuditSettings {
                enabled: true,
                log_path: bad.clone(),
            };
            let err = AuditFile::from_config(&settings).expect_err("refused");
            assert_eq!(err.key(), Some("POOL_AUDIT_LOG_PATH"));
            assert!(err.to_string().contains(&bad.display().to_string()), "{err}");
        }
        let off = AuditSettings {
            enabled: false,
            log_path: dir.join("missing-dir/audit.log"),
        };
        assert!(AuditFile::from_config(&off).expect("disabled").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
