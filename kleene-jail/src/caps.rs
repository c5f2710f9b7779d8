//! The capability bounding set of a Linux jail: Docker's default set; the names of Linux's
//! capabilities, and the sets a process can be given instead ([`Capabilities`]).

/// Every Linux capability, by number (`CAP_CHOWN` is 0, `CAP_CHECKPOINT_RESTORE` 40).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of capability `name`: `CAP_CHOWN` (or `chown`, `CHOWN`: the prefix and the
/// case are optional) is 0. `None` for a name Linux does not have.
pub fn capability_number(name: &str) -> Option<u32> {
    let bare = |n: &str| match n.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("CAP_") => n[4..].to_owned(),
        _ => n.to_owned(),
    };
    let wanted = bare(name);
    NAMES
        .iter()
        .position(|n| bare(n).eq_ignore_ascii_case(&wanted))
        .map(|i| i as u32)
}

/// The name of capability `n` (`CAP_CHOWN` for 0), `None` beyond the last one Linux has.
pub fn capability_name(n: u32) -> Option<&'static str> {
    NAMES.get(n as usize).copied()
}

/// The capability sets of a process, each a bit mask (bit `n` is capability `n`, see
/// [`capability_number`]), as `/proc/PID/status` shows them (`CapBnd`, `CapEff`, ...).
/// See [`crate::ExecConfig::capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// What the process and its descendants can ever have.
    pub bounding: u64,
    /// What it uses.
    pub effective: u64,
    /// What it may make effective.
    pub permitted: u64,
    /// What `execve` of a file with inheritable file capabilities passes on.
    pub inheritable: u64,
    /// What `execve` of any non-set-user-ID program keeps (each must also be permitted
    /// and inheritable).
    pub ambient: u64,
}

/// Docker's default capabilities, as (number, name). Everything else is dropped from the
/// bounding set of every process started in a jail.
pub const DEFAULT_CAPABILITIES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// The default set as a bit mask, as `CapBnd:` in `/proc/<pid>/status` shows it.
pub fn default_mask() -> u64 {
    DEFAULT_CAPABILITIES
        .iter()
        .fold(0u64, |m, (cap, _)| m | (1u64 << cap))
}

/// The capabilities `0..=last_cap` that are not in the default set.
pub fn capabilities_to_drop(last_cap: u32) -> Vec<u32> {
    let keep = default_mask();
    (0..=last_cap.min(63))
        .filter(|c| keep & (1u64 << c) == 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(capability_number("CAP_CHOWN"), Some(0));
        assert_eq!(capability_number("SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("cap_net_raw"), Some(13));
        assert_eq!(capability_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("CAP_NOPE"), None);
        assert_eq!(capability_number(""), None);
        assert_eq!(capability_name(0), Some("CAP_CHOWN"));
        assert_eq!(capability_name(40), Some("CAP_CHECKPOINT_RESTORE"));
        assert_eq!(capability_name(41), None);
        for n in 0..=40 {
            let name = capability_name(n).expect("a name");
            assert_eq!(capability_number(name), Some(n));
        }
        for (n, name) in DEFAULT_CAPABILITIES {
            assert_eq!(capability_name(*n), Some(*name));
        }
    }

    #[test]
    fn mask_is_dockers() {
        // The CapBnd a `docker run` process shows.
        assert_eq!(default_mask(), 0x0000_0000_a804_25fb);
    }

    #[test]
    fn drops_everything_else() {
        let drop = capabilities_to_drop(40);
        assert_eq!(drop.len(), 41 - DEFAULT_CAPABILITIES.len());
        assert!(drop.contains(&21)); // CAP_SYS_ADMIN
        assert!(drop.contains(&40)); // CAP_CHECKPOINT_RESTORE
        assert!(!drop.contains(&0));
        let mask = drop.iter().fold(0u64, |m, c| m | (1 << c));
        assert_eq!(mask | default_mask(), (1u64 << 41) - 1);
    }
}
