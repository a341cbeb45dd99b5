//! What the kernel says about threads and processes: CPU time from `/proc/<pid>/task/<tid>`
//! and `/proc/<pid>/stat`, resident memory from `/proc/<pid>/status`, and CPU pinning through
//! `taskset` (the workspace forbids `unsafe`, so `sched_setaffinity` is not called directly).
//!
//! Owns parsing of those files only; it must not decide what counts as "the SFU" — callers
//! pass the thread ids or the process id.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Kernel clock ticks per second for `utime`/`stime` (`getconf CLK_TCK`; 100 on every Linux
/// configuration we run on).
const CLOCK_TICKS: u64 = 100;

/// CPU time split by mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// User mode.
    pub user: Duration,
    /// Kernel mode.
    pub system: Duration,
}

impl CpuTime {
    /// User plus kernel.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// `self - earlier`, clamped at zero.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// `self + other`.
    pub fn plus(&self, other: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }

    fn add(&mut self, other: CpuTime) {
        self.user += other.user;
        self.system += other.system;
    }
}

/// `utime` and `stime` of a `stat` file's contents. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_stat(stat: &str) -> Option<CpuTime> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid (4), …, utime is field 14 and stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let tick = |t: u64| Duration::from_nanos(t * (1_000_000_000 / CLOCK_TICKS));
    Some(CpuTime {
        user: tick(utime),
        system: tick(stime),
    })
}

/// CPU time of thread `tid` of this process (`None` once it has exited).
pub fn thread_cpu(tid: u32) -> Option<CpuTime> {
    parse_stat(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// CPU time of process `pid` (all its threads, living and exited).
pub fn process_cpu(pid: u32) -> Option<CpuTime> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of thread `tid` of process `pid` (`None` once it has exited).
pub fn task_cpu(pid: u32, tid: u32) -> Option<CpuTime> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?)
}

/// Threads of process `pid` with their names (`comm`, at most 15 bytes), by thread id.
pub fn process_threads(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((tid, comm.trim_end().to_owned()))
        })
        .collect();
    threads.sort_unstable();
    threads
}

/// Thread ids of this process.
pub fn threads() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Summed CPU time of the threads `tids` of this process (those that have exited count
/// nothing: callers measure threads that live through the measurement).
pub fn cpu_of_threads(tids: &[u32]) -> CpuTime {
    let mut sum = CpuTime::default();
    for t in tids.iter().filter_map(|tid| thread_cpu(*tid)) {
        sum.add(t);
    }
    sum
}

/// The calling thread's id, from the `/proc/thread-self` link (`<pid>/task/<tid>`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Resident set size of process `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's id.
pub fn own_pid() -> u32 {
    std::process::id()
}

/// CPUs this machine has online.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why pinning did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// `taskset` could not be started (not installed).
    #[error("taskset is not available: {0}")]
    NoTaskset(std::io::Error),
    /// `taskset` refused.
    #[error("taskset -p -c {cpus} {tid} failed: {stderr}")]
    Refused {
        /// The CPUs asked for.
        cpus: String,
        /// The thread.
        tid: u32,
        /// What taskset said.
        stderr: String,
    },
}

/// Pins thread `tid` to `cpu` with `taskset -p -c` (which calls `sched_setaffinity` on a
/// thread id when given one).
pub fn pin_thread(tid: u32, cpu: usize) -> Result<(), PinError> {
    pin_thread_to(tid, &cpu.to_string())
}

/// Pins thread `tid` to the CPUs of a `taskset` list (`0`, `0-2`, `0,3`).
pub fn pin_thread_to(tid: u32, cpus: &str) -> Result<(), PinError> {
    let taskset = ["/usr/bin/taskset", "/bin/taskset"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("taskset");
    let out = Command::new(taskset)
        .args(["-p", "-c", cpus, &tid.to_string()])
        .output()
        .map_err(PinError::NoTaskset)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PinError::Refused {
            cpus: cpus.to_owned(),
            tid,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_tricky_name_is_parsed() {
        let stat = "1234 (sfu (worker) 1) R 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        let t = parse_stat(stat).unwrap();
        assert_eq!(t.user, Duration::from_millis(2500));
        assert_eq!(t.system, Duration::from_millis(300));
        assert_eq!(t.total(), Duration::from_millis(2800));
    }

    #[test]
    fn threads_of_a_process_are_listed_with_their_names() {
        // The name is set by the new thread itself: wait until it runs.
        let (started, running) = std::sync::mpsc::channel();
        let named = std::thread::Builder::new()
            .name("lg-probe-test".into())
            .spawn(move || {
                let _ = started.send(());
                std::thread::park_timeout(std::time::Duration::from_secs(5));
            })
            .unwrap();
        running.recv().unwrap();
        let threads = process_threads(own_pid());
        let (tid, _) = threads
            .iter()
            .find(|(_, name)| name == "lg-probe-test")
            .expect("the named thread");
        assert!(task_cpu(own_pid(), *tid).is_some());
        named.thread().unpark();
        named.join().unwrap();
    }

    #[test]
    fn own_thread_and_process_are_readable() {
        let tid = current_tid().expect("/proc/thread-self");
        assert!(threads().contains(&tid));
        assert!(thread_cpu(tid).is_some());
        assert!(process_cpu(own_pid()).is_some());
        assert!(rss_bytes(own_pid()).unwrap() > 0);
    }
}
