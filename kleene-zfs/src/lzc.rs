//! The libzfs_core backend (cargo feature `lzc`): ioctls on `/dev/zfs` for what
//! libzfs_core does — snapshot, clone, create, destroy a snapshot, rollback, promote,
//! send, exists — and zfs(8) for the rest: listing, properties, mounting, renaming,
//! receiving, recursive destroy. libzfs_core neither mounts nor unmounts, so the backend
//! mounts what it creates and unmounts what it destroys through zfs(8).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;
use std::thread;

use nvpair_sys as nv;
use zfs_core_sys as lzc;

use crate::backend::{Backend, Depth, Entry, Kind, Result};
use crate::cli::Cli;
use crate::error::ZfsError;
use crate::name::{DatasetName, SnapshotName};
use crate::property::{is_user_property, Properties};

/// Native properties whose value the kernel takes as a string, so they can be handed to
/// libzfs_core as they are; any other native property goes through zfs(8), which
/// converts it.
const STRING_NATIVE_PROPERTIES: &[&str] = &["mountpoint"];

/// An owned nvlist, freed on drop.
#[derive(Debug)]
pub(crate) struct NvList(*mut nv::nvlist_t);

impl NvList {
    pub(crate) fn new() -> Result<Self> {
        let mut list: *mut nv::nvlist_t = ptr::null_mut();
        // SAFETY: `list` is a valid out-pointer; NV_UNIQUE_NAME with flag 0 allocates with
        // the default allocator. On success it points to a new list that we own.
        let rc = unsafe { nv::nvlist_alloc(&mut list, nv::NV_UNIQUE_NAME, 0) };
        if rc != 0 || list.is_null() {
            return Err(lzc_error("nvlist_alloc", "-", rc));
        }
        Ok(Self(list))
    }

    pub(crate) fn add_boolean(&mut self, name: &str) -> Result<()> {
        let cname = cstring(name)?;
        // SAFETY: self.0 is a live list we own; cname is NUL-terminated and outlives the call
        // (the list copies the name).
        let rc = unsafe { nv::nvlist_add_boolean(self.0, cname.as_ptr()) };
        if rc != 0 {
            return Err(lzc_error("nvlist_add_boolean", name, rc));
        }
        Ok(())
    }

    pub(crate) fn add_string(&mut self, name: &str, value: &str) -> Result<()> {
        let cname = cstring(name)?;
        let cvalue = cstring(value)?;
        // SAFETY: as in add_boolean; the list copies both strings.
        let rc = unsafe { nv::nvlist_add_string(self.0, cname.as_ptr(), cvalue.as_ptr()) };
        if rc != 0 {
            return Err(lzc_error("nvlist_add_string", name, rc));
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn lookup_string(&self, name: &str) -> Option<String> {
        let cname = cstring(name).ok()?;
        let mut value: *mut std::os::raw::c_char = ptr::null_mut();
        // SAFETY: self.0 is live; `value` is a valid out-pointer that, on success, points
        // into the list's own storage, which lives as long as self.
        let rc = unsafe { nv::nvlist_lookup_string(self.0, cname.as_ptr(), &mut value) };
        if rc != 0 || value.is_null() {
            return None;
        }
        // SAFETY: on success `value` is a NUL-terminated string owned by the list, read
        // before the list can be freed.
        Some(
            unsafe { std::ffi::CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, name: &str) -> bool {
        let Ok(cname) = cstring(name) else {
            return false;
        };
        // SAFETY: self.0 is live and cname NUL-terminated.
        unsafe { nv::nvlist_exists(self.0, cname.as_ptr()) != 0 }
    }

    fn as_ptr(&self) -> *mut nv::nvlist_t {
        self.0
    }

    fn from_properties(props: &Properties) -> Result<Self> {
        let mut list = Self::new()?;
        for (k, v) in props.iter() {
            list.add_string(k, v)?;
        }
        Ok(list)
    }
}

impl Drop for NvList {
    fn drop(&mut self) {
        // SAFETY: self.0 came from nvlist_alloc and is freed exactly once, here.
        unsafe { nv::nvlist_free(self.0) }
    }
}

/// Frees an nvlist that libzfs_core returned through an out-pointer.
fn free_returned(list: *mut nv::nvlist_t) {
    if !list.is_null() {
        // SAFETY: libzfs_core hands ownership of the error list to the caller; it is
        // non-null and freed once.
        unsafe { nv::nvlist_free(list) }
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| ZfsError::InvalidName {
        name: s.to_string(),
        reason: "contains a NUL byte".into(),
    })
}

/// Reads a libzfs_core errno into the crate's error.
pub(crate) fn lzc_error(call: &'static str, name: &str, errno: i32) -> ZfsError {
    let name = name.to_string();
    match errno {
        libc::ENOENT => ZfsError::NotFound { name },
        libc::EEXIST => ZfsError::AlreadyExists { name },
        libc::EBUSY => ZfsError::Busy { name },
        libc::EPERM | libc::EACCES => ZfsError::PermissionDenied { name },
        libc::ENOSPC | libc::EDQUOT => ZfsError::OutOfSpace { name },
        libc::ENOTSUP => ZfsError::Unsupported {
            operation: call.to_string(),
            backend: "lzc",
        },
        _ => ZfsError::Lzc {
            call,
            name,
            source: std::io::Error::from_raw_os_error(errno),
        },
    }
}

/// Whether every property can go to libzfs_core as a string.
fn lzc_can_take(props: &Properties) -> bool {
    props
        .iter()
        .all(|(k, _)| is_user_property(k) || STRING_NATIVE_PROPERTIES.contains(&k))
}

/// The libzfs_core backend.
#[derive(Debug)]
pub struct Lzc {
    cli: Cli,
}

static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();

impl Lzc {
    /// Opens libzfs_core when `/dev/zfs` is there; otherwise says why not.
    pub fn probe() -> std::result::Result<Self, String> {
        if !Path::new("/dev/zfs").exists() {
            return Err("no /dev/zfs".to_string());
        }
        INIT.get_or_init(|| {
            // SAFETY: libzfs_core_init takes no arguments and opens /dev/zfs; it is called
            // once per process, guarded by the OnceLock.
            let rc = unsafe { lzc::libzfs_core_init() };
            if rc == 0 {
                Ok(())
            } else {
                Err(format!(
                    "libzfs_core_init failed: {}",
                    std::io::Error::from_raw_os_error(rc)
                ))
            }
        })
        .clone()?;
        Ok(Self { cli: Cli::new() })
    }

    /// Sets the deadlines of the zfs(8) processes this backend runs for what libzfs_core
    /// cannot do; its own ioctls have none.
    pub fn with_deadlines(self, deadlines: crate::Deadlines) -> Self {
        Self {
            cli: self.cli.with_deadlines(deadlines),
        }
    }

    fn check(call: &'static str, name: &str, rc: i32) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(lzc_error(call, name, rc))
        }
    }
}

impl Backend for Lzc {
    fn name(&self) -> &'static str {
        "lzc"
    }

    fn create(&self, name: &DatasetName, properties: &Properties) -> Result<()> {
        if !lzc_can_take(properties) {
            return self.cli.create(name, properties);
        }
        let cname = cstring(name.as_str())?;
        let props = NvList::from_properties(properties)?;
        // SAFETY: cname is NUL-terminated, props a live list; no wrapping key (null, 0).
        let rc = unsafe {
            lzc::lzc_create(
                cname.as_ptr(),
                lzc::lzc_dataset_type::LZC_DATSET_TYPE_ZFS,
                props.as_ptr(),
                ptr::null_mut(),
                0,
            )
        };
        Self::check("lzc_create", name.as_str(), rc)?;
        self.cli.mount_if_unmounted(name)
    }

    fn snapshot(&self, snapshots: &[SnapshotName], properties: &Properties) -> Result<()> {
        let Some(first) = snapshots.first() else {
            return Ok(());
        };
        if properties.iter().any(|(k, _)| !is_user_property(k)) {
            return self.cli.snapshot(snapshots, properties);
        }
        let mut snaps = NvList::new()?;
        for s in snapshots {
            snaps.add_boolean(s.as_str())?;
        }
        let props = NvList::from_properties(properties)?;
        let mut errors: *mut nv::nvlist_t = ptr::null_mut();
        // SAFETY: both lists are live; `errors` is a valid out-pointer whose list we free.
        let rc = unsafe { lzc::lzc_snapshot(snaps.as_ptr(), props.as_ptr(), &mut errors) };
        free_returned(errors);
        Self::check("lzc_snapshot", first.as_str(), rc)
    }

    fn clone_snapshot(
        &self,
        origin: &SnapshotName,
        target: &DatasetName,
        properties: &Properties,
    ) -> Result<()> {
        if !lzc_can_take(properties) {
            return self.cli.clone_snapshot(origin, target, properties);
        }
        let ctarget = cstring(target.as_str())?;
        let corigin = cstring(origin.as_str())?;
        let props = NvList::from_properties(properties)?;
        // SAFETY: NUL-terminated names and a live property list.
        let rc = unsafe { lzc::lzc_clone(ctarget.as_ptr(), corigin.as_ptr(), props.as_ptr()) };
        match Self::check("lzc_clone", target.as_str(), rc) {
            // ENOENT: the origin, or else the target's parent, is missing.
            Err(ZfsError::NotFound { .. }) => {
                let missing = if self.cli.exists(origin.as_str())? {
                    target.to_string()
                } else {
                    origin.to_string()
                };
                Err(ZfsError::NotFound { name: missing })
            }
            other => other,
        }?;
        self.cli.mount_if_unmounted(target)
    }

    fn destroy(&self, name: &DatasetName, recursive: bool) -> Result<()> {
        // zfs(8) unmounts what it destroys and walks children; libzfs_core does neither.
        self.cli.destroy(name, recursive)
    }

    fn destroy_snapshot(&self, name: &SnapshotName) -> Result<()> {
        let mut snaps = NvList::new()?;
        snaps.add_boolean(name.as_str())?;
        let mut errors: *mut nv::nvlist_t = ptr::null_mut();
        // SAFETY: a live list of one snapshot; `errors` is an out-pointer we free.
        let rc = unsafe { lzc::lzc_destroy_snaps(snaps.as_ptr(), 0, &mut errors) };
        free_returned(errors);
        match rc {
            // A snapshot with clones answers EEXIST; name the clones.
            libc::EEXIST => Err(ZfsError::HasDependents {
                name: name.to_string(),
                dependents: self.clones(name)?.iter().map(|d| d.to_string()).collect(),
            }),
            rc => Self::check("lzc_destroy_snaps", name.as_str(), rc),
        }
    }

    fn rename(&self, from: &DatasetName, to: &DatasetName) -> Result<()> {
        self.cli.rename(from, to)
    }

    fn rename_snapshot(&self, from: &SnapshotName, to: &SnapshotName) -> Result<()> {
        self.cli.rename_snapshot(from, to)
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<()> {
        if destroy_newer {
            return self.cli.rollback(snapshot, true);
        }
        let cfs = cstring(snapshot.dataset().as_str())?;
        let csnap = cstring(snapshot.as_str())?;
        // SAFETY: NUL-terminated names.
        let rc = unsafe { lzc::lzc_rollback_to(cfs.as_ptr(), csnap.as_ptr()) };
        Self::check("lzc_rollback_to", snapshot.as_str(), rc)
    }

    fn promote(&self, clone: &DatasetName) -> Result<()> {
        let cname = cstring(clone.as_str())?;
        let mut conflict = [0 as std::os::raw::c_char; 256];
        // SAFETY: the buffer is 256 bytes (ZFS_MAX_DATASET_NAME_LEN), as its length says.
        let rc = unsafe {
            lzc::lzc_promote(cname.as_ptr(), conflict.as_mut_ptr(), conflict.len() as i32)
        };
        Self::check("lzc_promote", clone.as_str(), rc)
    }

    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let (reader, writer) =
            std::io::pipe().map_err(|e| ZfsError::io("creating a pipe for lzc_send", e))?;
        let csnap = cstring(snapshot.as_str())?;
        let cfrom = from.map(|f| cstring(f.as_str())).transpose()?;
        let name = snapshot.to_string();
        let sender = thread::spawn(move || {
            let from_ptr = cfrom.as_ref().map_or(ptr::null(), |c| c.as_ptr());
            // SAFETY: NUL-terminated names (or null for a full stream) and an open fd that
            // stays open until the call returns (the writer is dropped after it).
            let rc = unsafe { lzc::lzc_send(csnap.as_ptr(), from_ptr, writer.as_raw_fd(), 0) };
            drop(writer);
            Self::check("lzc_send", &name, rc)
        });
        let mut reader = reader;
        let copied = std::io::copy(&mut reader, out);
        drop(reader);
        let sent = sender
            .join()
            .map_err(|_| ZfsError::io("lzc_send", std::io::Error::other("sender panicked")))?;
        sent?;
        copied
            .map(drop)
            .map_err(|e| ZfsError::io(format!("writing the stream of {snapshot}"), e))
    }

    fn receive(&self, target: &DatasetName, input: &mut dyn Read, force: bool) -> Result<()> {
        self.cli.receive(target, input, force)
    }

    fn send_receive(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        target: &DatasetName,
        force: bool,
    ) -> Result<()> {
        self.cli.send_receive(snapshot, from, target, force)
    }

    fn list(
        &self,
        root: &DatasetName,
        depth: Depth,
        kinds: &[Kind],
        properties: &[&str],
    ) -> Result<Vec<Entry>> {
        self.cli.list(root, depth, kinds, properties)
    }

    fn get(&self, name: &str, properties: &[&str]) -> Result<Properties> {
        self.cli.get(name, properties)
    }

    fn set(&self, name: &str, properties: &Properties) -> Result<()> {
        self.cli.set(name, properties)
    }

    fn inherit(&self, name: &str, property: &str) -> Result<()> {
        self.cli.inherit(name, property)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        let cname = cstring(name)?;
        // SAFETY: a NUL-terminated name.
        Ok(unsafe { lzc::lzc_exists(cname.as_ptr()) } != 0)
    }

    fn mount(&self, name: &DatasetName) -> Result<()> {
        self.cli.mount(name)
    }

    fn unmount(&self, name: &DatasetName, force: bool) -> Result<()> {
        self.cli.unmount(name, force)
    }

    fn mount_table(&self) -> bool {
        true
    }

    fn clones(&self, snapshot: &SnapshotName) -> Result<Vec<DatasetName>> {
        self.cli.clones(snapshot)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // libnvpair is plain userland code: these run without /dev/zfs.
    #[test]
    fn nvlist_round_trip() {
        let mut l = NvList::new().unwrap();
        l.add_boolean("pool/a@s").unwrap();
        l.add_string("kleene:id", "0123456789ab").unwrap();
        assert!(l.contains("pool/a@s"));
        assert!(!l.contains("pool/b@s"));
        assert_eq!(
            l.lookup_string("kleene:id").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(l.lookup_string("missing"), None);
        assert!(l.add_string("a\0b", "x").is_err());
    }

    #[test]
    fn errno_mapping() {
        assert!(lzc_error("lzc_clone", "p/x", libc::ENOENT).is_not_found());
        assert!(lzc_error("lzc_destroy", "p/x", libc::EBUSY).is_busy());
        assert!(matches!(
            lzc_error("lzc_create", "p/x", libc::EEXIST),
            ZfsError::AlreadyExists { .. }
        ));
        assert!(matches!(
            lzc_error("lzc_create", "p/x", libc::ENOSPC),
            ZfsError::OutOfSpace { .. }
        ));
        let e = lzc_error("lzc_create", "p/x", libc::EIO);
        assert!(e.to_string().starts_with("lzc_create on p/x failed"), "{e}");
    }

    #[test]
    fn only_string_properties_go_to_lzc() {
        let user = Properties::new().with("kleene:id", "x").unwrap();
        assert!(lzc_can_take(&user));
        let mp = Properties::new().with("mountpoint", "/m").unwrap();
        assert!(lzc_can_take(&mp));
        let quota = Properties::new().with("quota", "1G").unwrap();
        assert!(!lzc_can_take(&quota));
    }

    #[test]
    fn probe_says_why_not() {
        if !Path::new("/dev/zfs").exists() {
            assert_eq!(Lzc::probe().unwrap_err(), "no /dev/zfs");
        }
    }
}
