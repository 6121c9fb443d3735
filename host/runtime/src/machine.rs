//! The default memory budget, from what the machine (or the control group
//! the host runs in) has.
//!
//! Half of the smaller of `MemTotal` (`/proc/meminfo`) and the cgroup's
//! limit (v2 `memory.max`, v1 `memory.limit_in_bytes`): the other half is
//! for the daemon's own heap, the page cache the store and run log live
//! in, and whatever else runs beside it. Where neither can be read (not
//! Linux), [`FALLBACK_BYTES`].

use std::path::{Path, PathBuf};

/// The machine's memory when it cannot be read.
pub const FALLBACK_BYTES: u64 = 4 << 30;

/// The default host memory budget: half of [`machine_memory`].
pub fn default_max_memory() -> u64 {
    machine_memory() / 2
}

/// The memory this process may use: `MemTotal`, lowered to its control
/// group's limit if that is lower.
pub fn machine_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))
        .unwrap_or(FALLBACK_BYTES);
    cgroup_limit().map_or(total, |limit| limit.min(total))
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of this process's control group, if it has one.
fn cgroup_limit() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    limit_files(&groups, Path::new("/sys/fs/cgroup"))
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|text| parse_limit(&text))
        .min()
}

/// Where the limits of the groups named in a `/proc/self/cgroup` text live
/// under `root`: the group's own file, and the root's (inside a container
/// the group's path is often not visible, but the container's root is its
/// group).
fn limit_files(groups: &str, root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            files.push(root.join(path).join("memory.max"));
            files.push(root.join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            let v1 = root.join("memory");
            files.push(v1.join(path).join("memory.limit_in_bytes"));
            files.push(v1.join("memory.limit_in_bytes"));
        }
    }
    files
}

/// A limit file's value; `max` (v2) and v1's "no limit" (close to
/// `i64::MAX`) are no limit.
fn parse_limit(text: &str) -> Option<u64> {
    let n = text.trim().parse::<u64>().ok()?;
    (n < 1 << 60).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemTotal:       24683568 kB\nMemFree:        17854748 kB\n";
        assert_eq!(mem_total(text), Some(24_683_568 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn cgroup_limits_of_both_versions_are_found() {
        let root = Path::new("/cg");
        let v2 = limit_files("0::/system.slice/keyhole.service\n", root);
        assert_eq!(v2[0], root.join("system.slice/keyhole.service/memory.max"));
        let v1 = limit_files("4:memory:/docker/abc\n3:cpuset:/\n", root);
        assert_eq!(v1[0], root.join("memory/docker/abc/memory.limit_in_bytes"));
        assert_eq!(v1.len(), 2);
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("1073741824\n"), Some(1 << 30));
    }

    #[test]
    fn the_default_is_half_the_machine() {
        let machine = machine_memory();
        assert!(machine > 0);
        assert_eq!(default_max_memory(), machine / 2);
    }
}
