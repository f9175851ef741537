//! Running server programs as the right operating system user, and file ownership.
//!
//! PostgreSQL refuses to run as root. When this process is root, every server program
//! (`initdb`, `pg_ctl`, `pg_basebackup`) runs as the `postgres` user through `runuser`, and the
//! files and directories the server touches are chowned to it. As a normal user everything runs
//! directly and nothing is chowned. This module does not know what the programs do.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::pki::write_with_mode;
use crate::DevkitError;

/// The operating system user that owns and runs clusters when we are root.
const SERVER_USER: &str = "postgres";

/// Where `runuser` lives on Debian-like systems, tried before a `PATH` lookup because root's
/// `PATH` in containers often lacks `/usr/sbin`.
const RUNUSER_PATHS: [&str; 2] = ["/usr/sbin/runuser", "/sbin/runuser"];

/// Numeric ids of [`SERVER_USER`].
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// Knows the binary directory and which user server programs run as.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    bindir: PathBuf,
    /// `Some` when we are root and must switch to `postgres`.
    owner: Option<Owner>,
}

impl Runner {
    /// Finds the binaries and, when running as root, the `postgres` user.
    pub(crate) fn detect() -> Result<Self, DevkitError> {
        let bindir = super::find_pg_bindir()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        let owner = if is_root { Some(lookup_owner()?) } else { None };
        Ok(Runner { bindir, owner })
    }

    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// A command for server program `name`, wrapped in `runuser` when we are root.
    pub(crate) fn server_command(&self, name: &str) -> Command {
        let program = self.tool(name);
        let mut cmd = match self.owner {
            Some(_) => {
                let runuser = RUNUSER_PATHS
                    .iter()
                    .map(Path::new)
                    .find(|p| p.is_file())
                    .unwrap_or(Path::new("runuser"));
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", SERVER_USER, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        // The caller's working directory may be unreadable for `postgres` (for example /root).
        cmd.current_dir("/");
        cmd
    }

    /// Hands `path` to the server user (no-op unless root).
    pub(crate) fn chown(&self, path: &Path) -> Result<(), DevkitError> {
        let Some(owner) = self.owner else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
            .map_err(|e| DevkitError::io("changing the owner of", path, e))
    }

    /// Writes a file the server reads, with `mode`, owned by the server user.
    pub(crate) fn write_server_file(
        &self,
        path: &Path,
        contents: &str,
        mode: u32,
    ) -> Result<(), DevkitError> {
        write_with_mode(path, contents.as_bytes(), mode)?;
        self.chown(path)
    }

    /// Creates `dir` (and missing parents) with `mode`, owned by the server user, and makes
    /// sure the server user can traverse every ancestor.
    pub(crate) fn create_server_dir(&self, dir: &Path, mode: u32) -> Result<(), DevkitError> {
        fs::create_dir_all(dir).map_err(|e| DevkitError::io("creating directory", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| DevkitError::io("setting the mode of", dir, e))?;
        self.chown(dir)?;
        self.make_ancestors_traversable(dir)
    }

    /// Adds the search bit for others to each ancestor of `dir` that the server user could not
    /// enter (a fresh temporary directory is 0700 root). Only the search bit is added: listing
    /// stays forbidden, so nothing but the paths we hand to the server becomes reachable.
    fn make_ancestors_traversable(&self, dir: &Path) -> Result<(), DevkitError> {
        let Some(owner) = self.owner else {
            return Ok(());
        };
        for ancestor in dir.ancestors().skip(1) {
            let meta = fs::metadata(ancestor)
                .map_err(|e| DevkitError::io("reading metadata of", ancestor, e))?;
            let mode = meta.mode();
            let owner_can = meta.uid() == owner.uid && mode & 0o100 != 0;
            let group_can = meta.gid() == owner.gid && mode & 0o010 != 0;
            if owner_can || group_can || mode & 0o001 != 0 {
                continue;
            }
            let path = ancestor.display();
            tracing::debug!(path = %path, "adding o+x so postgres can reach its cluster");
            fs::set_permissions(
                ancestor,
                fs::Permissions::from_mode((mode & 0o7777) | 0o001),
            )
            .map_err(|e| DevkitError::io("setting the mode of", ancestor, e))?;
        }
        Ok(())
    }
}

/// Runs `cmd` with no stdin and captured output; a non-zero exit becomes
/// [`DevkitError::Command`] carrying stderr. `label` names the command in errors and must
/// not contain secrets.
pub(crate) fn run(mut cmd: Command, label: &str) -> Result<Output, DevkitError> {
    let program = PathBuf::from(cmd.get_program());
    tracing::debug!(command = label, "running");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DevkitError::Spawn { program, source })?;
    if !output.status.success() {
        return Err(DevkitError::Command {
            command: label.to_string(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// Looks up [`SERVER_USER`] with the re-entrant `getpwnam_r` (tests run on many threads).
fn lookup_owner() -> Result<Owner, DevkitError> {
    let err = |reason: String| DevkitError::ServerUser {
        user: SERVER_USER,
        reason,
    };
    let name = CString::new(SERVER_USER).map_err(|e| err(e.to_string()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; an all-zero value is valid and is only read after
    // getpwnam_r reports success and fills it in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned by this frame; the
    // strings written into `buf` are not used after it is dropped.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::from_raw_os_error(rc).to_string()));
    }
    if result.is_null() {
        return Err(err(
            "no such user; install the PostgreSQL server package".into()
        ));
    }
    Ok(Owner {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}
