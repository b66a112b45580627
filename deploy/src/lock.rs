//! One deploy or destroy per stack per machine: an exclusive lock on
//! `.local/locks/<stack>.lock`, held for the whole operation.
//!
//! The lock is the operating system's file lock, so it disappears with the process however the
//! process ends (no stale lock to clean up after a crash or Ctrl-C); the file only records who
//! holds it, for the refusal message. Deploys from other machines are caught by the stack's
//! `*_IN_PROGRESS` status instead.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};

use crate::{DeployError, Refusal, Workspace};

/// A held stack lock; released when dropped.
#[derive(Debug)]
pub struct StackLock {
    _file: File,
}

impl StackLock {
    /// Takes the lock of `stack_name` or refuses because another operation holds it.
    pub fn acquire(
        workspace: &Workspace,
        stack_name: &str,
        operation: &str,
    ) -> Result<StackLock, DeployError> {
        let path = workspace.lock_path(stack_name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(DeployError::io("create", dir))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(DeployError::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Refusal::LockedLocally {
                    stack: stack_name.to_owned(),
                    holder: if holder.is_empty() {
                        "holder unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                    lock: path,
                }
                .into());
            }
            Err(TryLockError::Error(e)) => return Err(DeployError::io("lock", &path)(e)),
        }
        let record = format!("{operation} by pid {}", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(record.as_bytes()));
        written.map_err(DeployError::io("write", &path))?;
        Ok(StackLock { _file: file })
    }
}
