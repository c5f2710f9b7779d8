//! Paths inside container and image roots: [`kleene_rootfs`], re-exported, whose errors
//! become [`CoreError`]s (a path refused for the root's safety is invalid input).

pub use kleene_rootfs::*;

use crate::error::CoreError;

impl From<kleene_rootfs::Error> for CoreError {
    fn from(e: kleene_rootfs::Error) -> Self {
        match e {
            kleene_rootfs::Error::Io {
                root,
                path,
                op,
                at,
                source,
            } => CoreError::Io {
                context: format!(
                    "{} in {}: {op} {}",
                    path.display(),
                    root.display(),
                    if at.as_os_str().is_empty() {
                        ".".into()
                    } else {
                        at.display().to_string()
                    }
                ),
                source,
            },
            kleene_rootfs::Error::OpenRoot { root, source } => {
                CoreError::io(format!("opening {}", root.display()), source)
            }
            e => CoreError::Path(e),
        }
    }
}
