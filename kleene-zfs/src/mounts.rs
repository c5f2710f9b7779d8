//! The host's mount table, read without running zfs(8): where a dataset is mounted.
//!
//! A `zfs get mounted,mountpoint` costs a process (~5 ms on zfs-fuse); the kernel's table
//! answers the same question for the mounts this process can see. Only a positive answer
//! is trusted: a dataset missing from the table may be mounted in another mount namespace,
//! and the caller then asks ZFS.

use std::path::PathBuf;

/// Where filesystem `dataset` is mounted according to the mount table of this process'
/// mount namespace: `None` when it is not there, or the table could not be read.
pub fn mounted_at(dataset: &str) -> Option<PathBuf> {
    table_lookup(dataset)
}

#[cfg(target_os = "linux")]
fn table_lookup(dataset: &str) -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    find_in_mountinfo(&table, dataset)
}

#[cfg(not(target_os = "linux"))]
fn table_lookup(_dataset: &str) -> Option<PathBuf> {
    // FreeBSD's OpenZFS mounts within the `zfs clone` call; its getmntinfo(3) would answer
    // too, but the one zfs(8) question it saves is not on a path that needs it.
    None
}

/// The mount point of the first whole-filesystem ZFS mount of `dataset` in `table`
/// (`/proc/self/mountinfo`'s format).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn find_in_mountinfo(table: &str, dataset: &str) -> Option<PathBuf> {
    table.lines().find_map(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let (head, tail) = line.split_once(" - ")?;
        let mut head = head.split(' ');
        let root = head.nth(3)?;
        let mount_point = head.next()?;
        let mut tail = tail.split(' ');
        let fstype = tail.next()?;
        let source = unescape(tail.next()?);
        let zfs = matches!(fstype, "zfs" | "fuse.zfs" | "fuse");
        (zfs && root == "/" && source == dataset).then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                u8::try_from(v).ok()
            });
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:45 / /kt rw,relatime shared:20 - fuse.zfs kt rw,user_id=0,group_id=0
41 40 0:46 / /kt/perf rw,relatime shared:21 - fuse.zfs kt/perf rw,user_id=0,group_id=0
42 40 0:47 /sub /elsewhere rw,relatime shared:22 - fuse.zfs kt/bound rw
43 22 0:48 / /tank/with\\040space rw,relatime shared:23 - zfs tank/a\\040b rw,xattr
44 22 0:49 / /other rw - ext4 kt/perf rw
";

    #[test]
    fn finds_whole_zfs_mounts_by_dataset() {
        assert_eq!(find_in_mountinfo(TABLE, "kt"), Some(PathBuf::from("/kt")));
        assert_eq!(
            find_in_mountinfo(TABLE, "kt/perf"),
            Some(PathBuf::from("/kt/perf"))
        );
        assert_eq!(
            find_in_mountinfo(TABLE, "tank/a b"),
            Some(PathBuf::from("/tank/with space"))
        );
        // a bind mount of a part of it is no answer, nor another filesystem's source
        assert_eq!(find_in_mountinfo(TABLE, "kt/bound"), None);
        assert_eq!(find_in_mountinfo(TABLE, "kt/none"), None);
        assert_eq!(find_in_mountinfo("garbage\n\n", "kt"), None);
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\9b\\"), "a\\9b\\");
    }
}
