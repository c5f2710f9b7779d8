//! The capability bounding set of a Linux jail: Docker's default set.

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
