//! Who used the machine's CPUs during a block: this benchmark (its own threads, its spinners and
//! the PostgreSQL server it started) or something else. On a shared machine other processes'
//! work is the main source of noise in latency figures, so each block reports it.
//!
//! Figures come from /proc in clock ticks (USER_HZ, usually 10 ms), so a block of half a second
//! on two CPUs resolves about 1% of the machine.

use std::fs;
use std::path::Path;

/// Machine-wide CPU time from the first line of /proc/stat, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// Everything, including idle and steal.
    pub total: u64,
    /// Time spent running something (not idle, iowait or steal).
    pub busy: u64,
    /// Time the hypervisor gave to other guests.
    pub steal: u64,
}

/// Parses the aggregate `cpu` line of /proc/stat.
pub fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    // already part of user and nice.
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v[..8].iter().sum();
    let (idle, iowait, steal) = (v[3], v[4], v[7]);
    Some(MachineTicks {
        total,
        busy: total - idle - iowait - steal,
        steal,
    })
}

/// One process's line of /proc/PID/stat: parent, own CPU ticks and waited-for children's ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcTicks {
    pub ppid: u32,
    pub own: u64,
    pub children: u64,
}

/// Parses /proc/PID/stat; the command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_proc(stat: &str) -> Option<ProcTicks> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(ProcTicks {
        ppid: u32::try_from(num(1)?).ok()?,
        own: num(11)? + num(12)?,
        children: num(13)? + num(14)?,
    })
}

fn read_proc(pid: u32) -> Option<ProcTicks> {
    parse_proc(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The processes that belong to the benchmark.
#[derive(Debug, Clone, Default)]
pub struct Ours {
    /// Processes counted with their own time only (the spinners).
    pub pids: Vec<u32>,
    /// The PostgreSQL postmaster: counted with its live children and the ones it has reaped.
    pub postmaster: Option<u32>,
}

impl Ours {
    /// Reads the postmaster's pid from the first line of `data_dir/postmaster.pid`.
    pub fn postmaster_of(data_dir: &Path) -> Option<u32> {
        fs::read_to_string(data_dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// CPU ticks used so far by this process (all threads), the listed pids and the PostgreSQL
    /// server.
    pub fn ticks(&self) -> u64 {
        let mut sum = read_proc(std::process::id()).map_or(0, |p| p.own);
        sum += self
            .pids
            .iter()
            .filter_map(|&pid| read_proc(pid))
            .map(|p| p.own)
            .sum::<u64>();
        if let Some(pm) = self.postmaster {
            if let Some(p) = read_proc(pm) {
                sum += p.own + p.children;
            }
            sum += children_of(pm);
        }
        sum
    }
}

/// Own ticks of the live processes whose parent is `parent`.
fn children_of(parent: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_proc)
        .filter(|p| p.ppid == parent)
        .map(|p| p.own)
        .sum()
}

/// A reading of the machine and of the benchmark's own processes.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    machine: MachineTicks,
    ours: u64,
}

/// Takes a reading.
pub fn read(ours: &Ours) -> Reading {
    let machine = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_machine(&s))
        .unwrap_or_default();
    Reading {
        machine,
        ours: ours.ticks(),
    }
}

/// Between two readings: the share of the machine's CPU time (all CPUs) that processes outside
/// the benchmark used, and the share stolen by the hypervisor, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub other_pct: f64,
    pub steal_pct: f64,
}

pub fn usage(before: &Reading, after: &Reading) -> Usage {
    let total = after.machine.total.saturating_sub(before.machine.total);
    if total == 0 {
        return Usage {
            other_pct: 0.0,
            steal_pct: 0.0,
        };
    }
    let busy = after.machine.busy.saturating_sub(before.machine.busy);
    let ours = after.ours.saturating_sub(before.ours);
    let steal = after.machine.steal.saturating_sub(before.machine.steal);
    Usage {
        other_pct: 100.0 * busy.saturating_sub(ours) as f64 / total as f64,
        steal_pct: 100.0 * steal as f64 / total as f64,
    }
}

/// The CPU's model name from /proc/cpuinfo, for the report's conditions.
pub fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_line_splits_busy_idle_and_steal() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
        let m = parse_machine(stat).unwrap();
        assert_eq!(m.total, 990);
        assert_eq!(m.steal, 10);
        assert_eq!(m.busy, 990 - 800 - 20 - 10);
        assert_eq!(parse_machine("cpu  1 2 3\n"), None);
    }

    #[test]
    fn process_line_with_spaces_and_parentheses_in_the_name() {
        let stat = "4242 (post gres: (app)) S 17 4242 4242 0 -1 4194560 1 2 3 4 \
                    30 12 7 5 20 0 1 0 100 0 0";
        let p = parse_proc(stat).unwrap();
        assert_eq!(p.ppid, 17);
        assert_eq!(p.own, 42);
        assert_eq!(p.children, 12);
    }

    #[test]
    fn usage_subtracts_the_benchmarks_own_time() {
        let at = |total, busy, steal, ours| Reading {
            machine: MachineTicks { total, busy, steal },
            ours,
        };
        // 200 ticks elapsed: 150 busy, of which 120 were ours; 4 stolen.
        let u = usage(&at(1000, 400, 10, 300), &at(1200, 550, 14, 420));
        assert_eq!(u.other_pct, 15.0);
        assert_eq!(u.steal_pct, 2.0);
    }

    #[test]
    fn this_process_is_readable() {
        let me = read_proc(std::process::id()).expect("own /proc entry");
        assert!(me.ppid > 0);
    }
}
