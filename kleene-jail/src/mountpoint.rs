//! Mount points inside a jail's root, made and found as the jail will see them.

use std::path::{Component, Path, PathBuf};

use kleene_rootfs::{OFlags, RootDir, Symlinks};

use crate::error::{Error, Result};

/// Makes mount target `target` (a path in the jail) and its missing parents inside the
/// root, as the jail resolves it: symlinks are followed inside the root (kleene-rootfs's
/// `FollowInRoot`), a symlink leading out of it is refused. The last component is an
/// empty file when `file` is set; an existing target is left alone. Gives the target's
/// real path below the root, with no symlink in it.
pub(crate) fn make_mount_point(root: &RootDir, target: &Path, file: bool) -> Result<PathBuf> {
    let rel: PathBuf = target
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let err = |e: kleene_rootfs::Error| {
        Error::io(
            format!("create {} in the jail root", rel.display()),
            e.into(),
        )
    };
    let follow = Symlinks::FollowInRoot;
    if !file {
        return root
            .resolve_dir(&rel, follow, Some(Default::default()))
            .map(|d| d.path)
            .map_err(err);
    }
    match root.resolve(&rel, follow) {
        Ok(real) => return Ok(real),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(parent) = rel.parent() {
        drop(root.open_dir(parent, follow, true).map_err(err)?);
    }
    // A dangling symlink there makes its target, as open(2) in the jail would.
    let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    drop(root.open_file(&rel, follow, flags, 0o644).map_err(err)?);
    root.resolve(&rel, follow).map_err(err)
}
