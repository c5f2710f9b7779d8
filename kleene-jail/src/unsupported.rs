//! Platforms without a jail backend: every operation says so.

use std::os::fd::BorrowedFd;

use nix::sys::signal::Signal;

use crate::config::{ExecConfig, JailConfig};
use crate::error::{Error, Result};
use crate::jail::JailHandle;
use crate::process::{ExitStatus, Process};

pub(crate) const PLATFORM: &str = "this platform";

#[derive(Debug, Default)]
pub(crate) struct BackendState;

#[derive(Debug)]
pub(crate) struct Waiter;

impl Waiter {
    pub fn pidfd(&self) -> Result<BorrowedFd<'_>> {
        Err(Error::UnsupportedPlatform)
    }
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        Err(Error::UnsupportedPlatform)
    }
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Err(Error::UnsupportedPlatform)
    }
    pub fn signal(&self, _signal: Signal) -> Result<()> {
        Err(Error::UnsupportedPlatform)
    }
    pub fn reap_in_background(&mut self) {}
}

pub(crate) async fn start(_cfg: &JailConfig) -> Result<(JailHandle, Process, BackendState)> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) async fn exec(
    _handle: &JailHandle,
    _pidfd: Option<BorrowedFd<'_>>,
    _cfg: &ExecConfig,
) -> Result<Process> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) async fn teardown(_state: &mut BackendState, _handle: &JailHandle) -> Result<()> {
    Ok(())
}

pub(crate) fn signal_handle(_handle: &JailHandle, _signal: Signal) -> Result<()> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) fn is_running(_handle: &JailHandle) -> bool {
    false
}
