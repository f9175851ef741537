//! The writer task: from the queue to the output, in batches.
//!
//! Owns the output (stdout or an append-only file, created with mode 0640) and the only
//! blocking work of the audit trail. It takes every record waiting in the queue, encodes the
//! batch, writes it with one `write_all` and flushes, so a busy proxy costs one write per
//! batch rather than per record. A batch whose write fails is counted as dropped (with the
//! warning of `drops`) and the writer goes on with the next one. On a reopen request (after
//! log rotation moved the file) it opens the path again. It stops, after writing everything
//! queued, once every [`crate::Audit`] handle is gone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};

use crate::drops::Drops;
use crate::error::AuditError;
use crate::event::{encode, Event};

/// Largest batch encoded before it is written, so one write stays a reasonable size.
const BATCH_BYTES: usize = 256 * 1024;

/// One queued record: when it happened and what.
pub(crate) struct Message {
    pub(crate) at: SystemTime,
    pub(crate) event: Event,
}

/// Where lines go: a file, or a duplicate of the standard output descriptor. Both are
/// written through tokio's blocking pool, so a full pipe or a slow disk stalls only this task.
pub(crate) struct Output {
    /// The file's path, `None` for standard output.
    path: Option<PathBuf>,
    file: tokio::fs::File,
}

impl Output {
    pub(crate) fn open_file(path: PathBuf) -> Result<Output, AuditError> {
        let file = open_append(&path)?;
        Ok(Output {
            path: Some(path),
            file,
        })
    }

    /// Standard output, through its own descriptor (logs go to stderr, so lines do not mix).
    pub(crate) fn stdout() -> Result<Output, AuditError> {
        use std::os::fd::AsFd;
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| AuditError::Stdout { source })?;
        Ok(Output {
            path: None,
            file: tokio::fs::File::from_std(std::fs::File::from(fd)),
        })
    }
}

/// Opens `path` for appending, creating it readable by owner and group only: audit lines
/// name identities and client addresses.
fn open_append(path: &PathBuf) -> Result<tokio::fs::File, AuditError> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    let file = options.open(path).map_err(|source| AuditError::Open {
        path: path.clone(),
        source,
    })?;
    Ok(tokio::fs::File::from_std(file))
}

/// What the writer did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterSummary {
    /// Lines written to the output.
    pub written: u64,
    /// Records the writer itself lost to output errors (queue drops are not included).
    pub failed: u64,
}

/// The task that writes the audit trail; run it with `tokio::spawn(writer.run())`.
#[must_use = "nothing is written until the writer runs"]
pub struct AuditWriter {
    pub(crate) queue: mpsc::Receiver<Message>,
    pub(crate) output: Output,
    pub(crate) reopen: Arc<Notify>,
    pub(crate) drops: Arc<Drops>,
}

impl AuditWriter {
    /// Writes records until every [`crate::Audit`] handle has been dropped and the queue is
    /// empty, then flushes and reports any drops not yet warned about.
    pub async fn run(mut self) -> WriterSummary {
        let mut summary = WriterSummary::default();
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
        loop {
            let first = tokio::select! {
                // A rotation request is served before more lines go to the old file.
                biased;
                () = self.reopen.notified() => {
                    self.reopen_file();
                    continue;
                }
                message = self.queue.recv() => message,
            };
            let Some(first) = first else {
                break;
            };

            batch.clear();
            let mut count = self.add(&mut batch, first);
            while batch.len() < BATCH_BYTES {
                let Ok(next) = self.queue.try_recv() else {
                    break;
                };
                count += self.add(&mut batch, next);
            }
            self.write(&batch, count, &mut summary).await;
        }
        self.drops.report("the audit writer stopped");
        summary
    }

    /// Encodes one record into the batch; returns how many lines it added (0 or 1).
    fn add(&self, batch: &mut Vec<u8>, message: Message) -> u64 {
        let before = batch.len();
        match encode(message.at, &message.event, batch) {
            Ok(()) => 1,
            Err(error) => {
                // Every field is a plain string or number, so this should not happen; if it
                // does, the record is counted like any other loss.
                batch.truncate(before);
                tracing::error!(%error, "cannot encode an audit record");
                self.drops.record(1, "encoding failed");
                0
            }
        }
    }

    async fn write(&mut self, batch: &[u8], count: u64, summary: &mut WriterSummary) {
        if count == 0 {
            return;
        }
        let sink = &mut self.output.file;
        let written = match sink.write_all(batch).await {
            Ok(()) => sink.flush().await,
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => summary.written += count,
            Err(error) => {
                tracing::error!(%error, lines = count, "cannot write audit records");
                summary.failed += count;
                self.drops.record(count, "the audit output failed");
            }
        }
    }

    fn reopen_file(&mut self) {
        let Some(path) = &self.output.path else {
            return;
        };
        match open_append(path) {
            Ok(reopened) => {
                self.output.file = reopened;
                tracing::info!(path = %path.display(), "audit file reopened");
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot reopen the audit file; still writing to the old one");
            }
        }
    }
}
