//! Which CPU each end of a loopback round trip runs on.
//!
//! On this machine (a VM whose idle vCPUs halt at once: the `haltpoll`
//! cpuidle driver with `guest_halt_poll_ns` 0) waking a thread that sleeps
//! on another, idle, CPU costs about 28 µs, so a round trip between two
//! CPUs costs some 57 µs more than one on a single CPU, and the kernel
//! prefers the idle CPU. The API case therefore measures both: as the
//! kernel places the two ends, and with both on CPU 0, where what remains
//! is keyhole's own path. Pinning goes through `taskset` (util-linux); if
//! it is missing, the pinned figures are skipped.

use std::process::{Command, Stdio};

/// Runs `taskset` with `args`; whether it succeeded.
fn taskset(args: &[&str]) -> bool {
    Command::new("taskset")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The kernel's id of the calling thread (`/proc/thread-self` is
/// `PID/task/TID`).
fn thread_id() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_str()?.to_owned())
}

/// Every CPU online, as a `taskset` list (not from the calling thread's
/// affinity, which may be pinned just now).
fn all_cpus() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map_or_else(|_| "0".to_owned(), |s| s.trim().to_owned())
}

/// Pins the calling thread to `cpu`, or lets it run anywhere again (None).
pub fn pin_this_thread(cpu: Option<usize>) -> bool {
    let list = cpu.map_or_else(all_cpus, |c| c.to_string());
    thread_id().is_some_and(|tid| taskset(&["-p", "-c", &list, &tid]))
}

/// Pins every thread of process `pid` to `cpu`, or lets them run anywhere
/// again (None).
pub fn pin_process(pid: u32, cpu: Option<usize>) -> bool {
    let list = cpu.map_or_else(all_cpus, |c| c.to_string());
    taskset(&["-a", "-p", "-c", &list, &pid.to_string()])
}
