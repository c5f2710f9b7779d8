//! Users and groups of the *container*: its `/etc/passwd` and `/etc/group`, parsed here
//! (never the host's NSS), read without following symlinks out of the container root.

use std::io;
use std::path::Path;

use kleene_rootfs::{RootDir, Symlinks};

use crate::error::{Error, Result};

/// A line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// A line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Names of the members (the primary members are in passwd).
    pub members: Vec<String>,
}

/// Parses passwd(5) text; malformed lines, comments and NIS `+`/`-` lines are skipped.
/// FreeBSD's `master.passwd` layout (10 fields) is understood as well.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let (home, shell) = match f.len() {
                7 => (f[5], f[6]),
                10 => (f[8], f[9]),
                _ => return None,
            };
            if f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: home.to_owned(),
                shell: shell.to_owned(),
            })
        })
        .collect()
}

/// Parses group(5) text; malformed lines and comments are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 4 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// A user resolved against the container's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The login name, when the user is in passwd.
    pub name: Option<String>,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// All group ids: the primary one first, then those of `/etc/group` naming the user.
    pub groups: Vec<u32>,
    /// Home directory (`/` when the user is not in passwd).
    pub home: String,
    /// Shell (`/bin/sh` when the user is not in passwd).
    pub shell: String,
}

impl ResolvedUser {
    /// The super-user, as a container without `/etc/passwd` has it.
    pub fn root() -> Self {
        ResolvedUser {
            name: Some("root".into()),
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".into(),
            shell: "/bin/sh".into(),
        }
    }
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` (group by name or number) against the
/// given entries. A numeric uid missing from passwd is allowed (gid 0 unless given), as
/// Docker does; an unknown name is an error.
pub fn resolve_user(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ResolvedUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(Error::UnknownUser {
            user: spec.to_owned(),
        });
    }
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd
            .iter()
            .find(|e| e.uid == uid)
            .cloned()
            .or(Some(PasswdEntry {
                name: String::new(),
                uid,
                gid: 0,
                home: "/".into(),
                shell: "/bin/sh".into(),
            })),
        Err(_) => passwd.iter().find(|e| e.name == user).cloned(),
    };
    let entry = match entry {
        Some(e) => e,
        None if user == "root" => return Ok(ResolvedUser::root()),
        None => {
            return Err(Error::UnknownUser {
                user: spec.to_owned(),
            })
        }
    };
    let name = (!entry.name.is_empty()).then(|| entry.name.clone());
    let (gid, group_list) = match group {
        Some(g) => {
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| Error::UnknownGroup {
                            group: g.to_owned(),
                        })?
                        .gid
                }
            };
            (gid, vec![gid])
        }
        None => {
            let mut list = vec![entry.gid];
            if let Some(n) = &name {
                for g in groups.iter().filter(|g| g.members.iter().any(|m| m == n)) {
                    if !list.contains(&g.gid) {
                        list.push(g.gid);
                    }
                }
            }
            (entry.gid, list)
        }
    };
    Ok(ResolvedUser {
        name,
        uid: entry.uid,
        gid,
        groups: group_list,
        home: entry.home,
        shell: entry.shell,
    })
}

/// The largest passwd/group file read (a guard against a hostile image).
const MAX_FILE: u64 = 16 << 20;

/// Reads `/etc/<file>` of the container as it sees it: symlinks are followed inside its
/// root, never out of it (see kleene-rootfs). A missing file reads as empty.
pub(crate) fn read_container_file(root: &RootDir, file: &'static str) -> Result<String> {
    let err = |source| Error::ContainerFile {
        file: match file {
            "passwd" => "/etc/passwd",
            "group" => "/etc/group",
            _ => "/etc file",
        },
        source,
    };
    let data = match root.read_file(
        Path::new("etc").join(file),
        Symlinks::FollowInRoot,
        MAX_FILE,
    ) {
        Ok(data) => data,
        Err(e) if e.is_not_found() => return Ok(String::new()),
        Err(e) => return Err(err(e.into())),
    };
    String::from_utf8(data).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Opens the root directory for [`read_container_file`].
pub(crate) fn open_root(root: &Path) -> Result<RootDir> {
    RootDir::open(root).map_err(|_| Error::RootNotFound {
        path: root.to_owned(),
    })
}

/// Resolves a user spec against the container whose root directory is `root`.
pub(crate) fn resolve_in_root(root: &RootDir, spec: &str) -> Result<ResolvedUser> {
    let passwd = parse_passwd(&read_container_file(root, "passwd")?);
    let group = parse_group(&read_container_file(root, "group")?);
    resolve_user(spec, &passwd, &group)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        alice:x:1234:2000:Alice,,,:/home/alice:/bin/ash\n\
        +nis::::::\n\
        bob:*:1300:1300:Bob:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
        staff:x:2000:\n\
        wheel:x:10:alice, bob\n\
        video:x:44:bob,alice\n\
        bad\n\
        bobs:x:1300:\n";

    #[test]
    fn parses_passwd() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(p[2].name, "alice");
        assert_eq!(p[2].uid, 1234);
        assert_eq!(p[2].gid, 2000);
        assert_eq!(p[2].home, "/home/alice");
        assert_eq!(p[2].shell, "/bin/ash");
    }

    #[test]
    fn parses_freebsd_master_passwd() {
        let p = parse_passwd("toor:*:0:0::0:0:Bourne-again Superuser:/root:\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].home, "/root");
    }

    #[test]
    fn parses_group() {
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 5);
        assert_eq!(g[2].members, vec!["alice", "bob"]);
    }

    fn r(spec: &str) -> Result<ResolvedUser> {
        resolve_user(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn resolves_names_with_supplementary_groups() {
        let u = r("alice").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 2000));
        assert_eq!(u.groups, vec![2000, 10, 44]);
        assert_eq!(u.name.as_deref(), Some("alice"));
        assert_eq!(u.home, "/home/alice");
    }

    #[test]
    fn resolves_numbers() {
        let u = r("1234").unwrap();
        assert_eq!(u.name.as_deref(), Some("alice"));
        assert_eq!(u.groups, vec![2000, 10, 44]);
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.name.clone()), (4242, 0, None));
        assert_eq!(u.home, "/");
        let u = r("4242:77").unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (4242, 77, vec![77]));
    }

    #[test]
    fn resolves_explicit_groups() {
        let u = r("alice:wheel").unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (1234, 10, vec![10]));
        assert!(matches!(
            r("alice:nogroup"),
            Err(Error::UnknownGroup { .. })
        ));
    }

    #[test]
    fn unknown_users_are_errors() {
        assert!(matches!(r("mallory"), Err(Error::UnknownUser { .. })));
        assert!(matches!(r(""), Err(Error::UnknownUser { .. })));
        assert!(matches!(r("alice:"), Err(Error::UnknownUser { .. })));
        // root works even without a passwd file.
        let u = resolve_user("root", &[], &[]).unwrap();
        assert_eq!(u.uid, 0);
    }

    #[test]
    fn reads_files_without_escaping_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(dir.path().join("outside"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), GROUP).unwrap();
        // An absolute symlink to a file outside the root.
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("etc/passwd")).unwrap();
        let fd = open_root(&root).unwrap();
        // The link is resolved inside the root (where it does not exist: empty file), on
        // every platform. Neither reads the host's file.
        match read_container_file(&fd, "passwd") {
            Ok(text) => assert!(text.is_empty()),
            Err(e) => assert!(matches!(e, Error::ContainerFile { .. })),
        }
        let rdonly = kleene_rootfs::OFlags::RDONLY;
        assert!(fd
            .open_file("etc/passwd", Symlinks::Refuse, rdonly, 0)
            .is_err());
        assert!(fd
            .open_file("../outside", Symlinks::Refuse, rdonly, 0)
            .is_err());
        assert_eq!(read_container_file(&fd, "group").unwrap(), GROUP);
        // A relative link climbing out is refused.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("etc/passwd")).unwrap();
        match read_container_file(&fd, "passwd") {
            Ok(text) => assert!(!text.contains("evil")),
            Err(e) => assert!(matches!(e, Error::ContainerFile { .. })),
        }
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
        let u = resolve_in_root(&fd, "alice").unwrap();
        assert_eq!(u.uid, 1234);
        // A passwd reached through a symlink inside the root is followed.
        std::fs::create_dir(root.join("lib")).unwrap();
        std::fs::rename(root.join("etc/passwd"), root.join("lib/passwd")).unwrap();
        std::os::unix::fs::symlink("/lib/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(resolve_in_root(&fd, "alice").unwrap().uid, 1234);
    }
}
