//! Idle-priority busy loops, one per core, that keep the cores out of deep idle states while a
//! latency benchmark runs. Under SCHED_IDLE they run only when nothing else wants the core, so
//! they take (almost) no time from the benchmark; what they remove is the wake-up latency of an
//! idle core, which on a small VM is tens of microseconds and swings with the host's load.

use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// The command every spinner runs.
const LOOP: &str = "while :; do :; done";

/// Running spinner processes; they are killed on [`Spinners::stop`] or on drop.
pub struct Spinners {
    children: Vec<Child>,
}

impl Spinners {
    /// Starts `count` spinners with `chrt --idle 0 sh -c '...'`.
    ///
    /// # Errors
    /// `chrt` is missing, or it cannot set SCHED_IDLE here (checked with `chrt --idle 0 true`),
    /// or a spinner cannot be spawned.
    pub fn start(count: usize) -> anyhow::Result<Spinners> {
        let probe = Command::new("chrt")
            .args(["--idle", "0", "true"])
            .stdin(Stdio::null())
            .output();
        match probe {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("--spin needs chrt (util-linux), which is not installed")
            }
            Err(e) => bail!("--spin: cannot run chrt: {e}"),
            Ok(out) if !out.status.success() => bail!(
                "--spin: `chrt --idle 0 true` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Ok(_) => {}
        }
        let mut spinners = Spinners {
            children: Vec::with_capacity(count),
        };
        for _ in 0..count {
            // chrt execs sh, so the child's pid is the loop's pid and killing it ends the loop.
            let child = Command::new("chrt")
                .args(["--idle", "0", "sh", "-c", LOOP])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning an idle-priority spinner")?;
            spinners.children.push(child);
        }
        Ok(spinners)
    }

    /// The spinners' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Kills every spinner; returns a line for each one that had already exited, since the
    /// measurement then ran without it.
    pub fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for mut child in self.children.drain(..) {
            let pid = child.id();
            match child.try_wait() {
                Ok(Some(status)) => {
                    problems.push(format!("spinner {pid} had exited early ({status})"));
                    continue;
                }
                Ok(None) => {}
                Err(e) => problems.push(format!("spinner {pid}: cannot check its state: {e}")),
            }
            if let Err(e) = child.kill() {
                problems.push(format!("spinner {pid}: kill failed: {e}"));
            }
            let _ = child.wait();
        }
        problems
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
