//! Platforms without a jail backend: every operation says so.

use std::os::fd::BorrowedFd;

use nix::sys::signal::Signal;

use crate::config::{ExecConfig, JailConfig, Lifetime};
use crate::error::{Error, Result};
use crate::jail::{CommandEnd, JailHandle};
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

pub(crate) fn signal_all(_handle: &JailHandle, _signal: Signal) -> Result<()> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) fn update_params(_handle: &JailHandle, _params: &[crate::JailParam]) -> Result<()> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) fn kill_all(_handle: &JailHandle) -> Result<()> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) async fn wait_command(
    _process: &mut Process,
    _handle: &JailHandle,
    _lifetime: Lifetime,
) -> Result<CommandEnd> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) async fn wait_jail(
    _process: &mut Process,
    _handle: &JailHandle,
    _lifetime: Lifetime,
    _command: Option<ExitStatus>,
) -> Result<ExitStatus> {
    Err(Error::UnsupportedPlatform)
}

#[derive(Debug)]
pub(crate) struct Found;

impl Found {
    pub fn pid(&self) -> i32 {
        0
    }
    pub fn first(&self) -> bool {
        false
    }
    pub fn signal(&self, _signal: Signal) -> std::io::Result<()> {
        Ok(())
    }
    pub fn exited(&self) -> bool {
        true
    }
}

pub(crate) fn find_under(_root: &std::path::Path) -> Result<Vec<Found>> {
    Err(Error::UnsupportedPlatform)
}

pub(crate) fn wait_exited(_found: &[&Found], _timeout: std::time::Duration) {}

pub(crate) fn release_under(_root: &std::path::Path) -> Result<()> {
    Ok(())
}
