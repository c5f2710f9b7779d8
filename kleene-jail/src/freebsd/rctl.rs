//! A jail's resource limits on FreeBSD: the rules of [`crate::rctl`] added and removed
//! with `rctl_add_rule(2)`/`rctl_remove_rule(2)`, its usage read with
//! `rctl_get_racct(2)`, and `--cpuset-cpus` as the jail's cpuset (`cpuset_setaffinity(2)`).
//!
//! The rules name the jail (`jail:NAME:...`), so they can be added before the jail
//! exists and are matched by name, as rctl.conf(5)'s are. RCTL needs a kernel booted
//! with `kern.racct.enable=1`; without it every call fails with `ENOSYS`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::io;
use std::mem;

use crate::cgroup::Usage;
use crate::error::{Error, Result};
use crate::freebsd_plan::Iovecs;
use crate::params::KernelParam;
use crate::rctl::{
    check_jail_name, cpuset_list, parse_racct, rctl_filter, rctl_lifted, rctl_rules, rule_amounts,
    RacctUsage,
};
use crate::resources::Resources;

/// Why `ENOSYS` from an rctl call: the kernel has no RACCT, or it is disabled.
const RACCT_DISABLED: &str =
    "they need RACCT: set kern.racct.enable=1 in /boot/loader.conf and reboot";

/// The first size of `rctl_get_racct(2)`'s output buffer; a jail's report is about 400
/// bytes.
const RACCT_BUF: usize = 4096;

/// The largest output buffer tried (the kernel's own `RCTL_MAX_OUTBUFSIZE`).
const RACCT_BUF_MAX: usize = 16 * 1024 * 1024;

// sys/rctl.h: system calls of FreeBSD's libc that the `libc` crate does not bind. Each
// takes a NUL-terminated string and its length including the NUL (at most 4 KiB), and
// an output buffer (unused by add and remove).
extern "C" {
    fn rctl_get_racct(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
    fn rctl_add_rule(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
    fn rctl_remove_rule(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
    fn rctl_get_rules(
        inbufp: *const c_char,
        inbuflen: libc::size_t,
        outbufp: *mut c_char,
        outbuflen: libc::size_t,
    ) -> c_int;
}

/// One of the rctl system calls above.
type RctlCall =
    unsafe extern "C" fn(*const c_char, libc::size_t, *mut c_char, libc::size_t) -> c_int;

/// Calls `f` with `input` and, if given, `out` as its output buffer.
fn call(f: RctlCall, input: &CStr, out: Option<&mut [u8]>) -> io::Result<()> {
    let (out_ptr, out_len) = match out {
        Some(buf) => (buf.as_mut_ptr().cast::<c_char>(), buf.len()),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: `input` is NUL-terminated and its length counts the NUL, as the kernel's
    // copyinstr(9) needs; the output is either null with length 0 (add and remove never
    // write it) or a live, writable buffer of `out_len` bytes borrowed for the call.
    let r = unsafe {
        f(
            input.as_ptr(),
            input.to_bytes_with_nul().len(),
            out_ptr,
            out_len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A rule or filter as the system calls take it.
fn c_rule(rule: &str) -> Result<CString> {
    CString::new(rule)
        .map_err(|_| Error::InvalidConfig(format!("rctl rule {rule:?} contains a NUL byte")))
}

/// The error of a failed rctl call: `ENOSYS` says RACCT is off.
fn rctl_error(what: String, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSYS) {
        Error::LimitUnavailable {
            limit: "resource limits".to_string(),
            reason: RACCT_DISABLED.to_string(),
        }
    } else {
        Error::io(what, e)
    }
}

/// The text `f` (`rctl_get_racct` or `rctl_get_rules`) reports for `filter`, its
/// buffer grown while the kernel says it is too small (`ERANGE`).
fn report(f: RctlCall, filter: &str) -> Result<String> {
    let c = c_rule(filter)?;
    let what = || format!("read rctl {filter}");
    let mut buf = vec![0u8; RACCT_BUF];
    loop {
        match call(f, &c, Some(&mut buf)) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < RACCT_BUF_MAX => {
                buf = vec![0u8; buf.len() * 2];
            }
            Err(e) => return Err(rctl_error(what(), e)),
        }
    }
    let text = CStr::from_bytes_until_nul(&buf).map_err(|_| {
        Error::io(
            what(),
            io::Error::new(io::ErrorKind::InvalidData, "the report is not terminated"),
        )
    })?;
    Ok(text.to_string_lossy().into_owned())
}

/// Removes the rules of `filter`; none matching is no error.
fn remove_filter(filter: &CStr) -> io::Result<()> {
    match call(rctl_remove_rule, filter, None) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        r => r,
    }
}

/// Adds the rules of `r` for the jail named `jail_name` ([`crate::rctl::rctl_rules`]),
/// first removing those a limit set to unlimited lifts (an update). Each rule replaces
/// one of the jail for the same resource. If a rule is refused, the ones this call
/// added are removed again.
///
/// `cpuset_cpus` is not a rule: see [`apply_cpuset`].
pub(crate) fn apply(jail_name: &str, r: &Resources) -> Result<()> {
    let rules = rctl_rules(jail_name, r)?;
    for filter in rctl_lifted(jail_name, r)? {
        remove_filter(&c_rule(&filter)?)
            .map_err(|e| rctl_error(format!("remove rctl rules {filter}"), e))?;
    }
    let mut added: Vec<CString> = Vec::with_capacity(rules.len());
    for rule in &rules {
        let c = c_rule(rule)?;
        if let Err(e) = call(rctl_add_rule, &c, None) {
            for done in &added {
                if let Err(undo) = remove_filter(done) {
                    log::warn!("cannot remove rctl rule {done:?} again: {undo}");
                }
            }
            return Err(rctl_error(format!("add rctl rule {rule}"), e));
        }
        added.push(c);
    }
    Ok(())
}

/// Removes every rule of the jail named `jail_name` (`rctl -r jail:NAME`). No rules
/// (`ESRCH`), RACCT off (`ENOSYS`: none can have been added) and a name no rule can
/// hold (refused by [`apply`]) are no error.
pub(crate) fn remove(jail_name: &str) -> Result<()> {
    if let Err(e) = check_jail_name(jail_name) {
        log::debug!("no rctl rules to remove: {e}");
        return Ok(());
    }
    let filter = rctl_filter(jail_name);
    match remove_filter(&c_rule(&filter)?) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        r => r.map_err(|e| Error::io(format!("remove rctl rules {filter}"), e)),
    }
}

/// The resource usage of the jail named `jail_name` (`rctl -u jail:NAME`). A name no
/// jail has reads as no usage, as the kernel reports it.
pub(crate) fn usage(jail_name: &str) -> Result<RacctUsage> {
    check_jail_name(jail_name)?;
    Ok(parse_racct(&report(
        rctl_get_racct,
        &rctl_filter(jail_name),
    )?)?)
}

/// The least amount of the jail's `deny` rules for `resource`, as
/// `rctl jail:NAME:RESOURCE:deny` lists them; `None` without one.
fn deny_limit(jail_name: &str, resource: &str) -> Result<Option<u64>> {
    let filter = format!("{}:{resource}:deny", rctl_filter(jail_name));
    Ok(rule_amounts(&report(rctl_get_rules, &filter)?)
        .into_iter()
        .min())
}

/// The jail's usage as a [`Usage`], the cgroups' report: CPU time (RACCT counts whole
/// seconds), resident memory and processes, with the memory and process limits of its
/// rules. FreeBSD neither throttles by periods nor kills on memory (`memoryuse` is
/// enforced by paging out), so those counts are 0.
pub(crate) fn group_usage(jail_name: &str) -> Result<Usage> {
    let racct = usage(jail_name)?;
    Ok(Usage {
        cpu_ns: racct.cpu_time_secs.saturating_mul(1_000_000_000),
        memory_bytes: racct.memory_bytes,
        memory_limit: deny_limit(jail_name, "memoryuse")?,
        pids: racct.processes,
        pids_limit: deny_limit(jail_name, "maxproc")?,
        ..Usage::default()
    })
}

/// Changes the limits of the running jail named `jail_name`: its rules ([`apply`]) and,
/// with `cpuset_cpus`, its cpuset ([`apply_cpuset`]). Limits `r` does not name keep
/// their rules.
pub(crate) fn update(jail_name: &str, r: &Resources) -> Result<()> {
    let cpus = r.cpuset_cpus.as_deref().map(cpuset_list).transpose()?;
    apply(jail_name, r)?;
    if let Some(cpus) = cpus {
        let jid = jid_of(jail_name)?.ok_or(Error::NotRunning)?;
        apply_cpuset(jid, &cpus)?;
    }
    Ok(())
}

/// The jid of the live jail named `jail_name` (`jail_get(2)` by name); `None` if there
/// is none.
fn jid_of(jail_name: &str) -> Result<Option<i32>> {
    let mut value = jail_name.as_bytes().to_vec();
    value.push(0);
    let params = [KernelParam {
        name: c"name".to_owned(),
        value,
    }];
    let mut iov = Iovecs::new(&params, None);
    // SAFETY: the iovecs point into `params`, which outlives the call; jail_get(2) only
    // reads the name (no parameter asks for a value back) and returns the jid.
    let jid = unsafe { libc::jail_get(iov.iov.as_mut_ptr(), iov.iov.len() as libc::c_uint, 0) };
    drop(iov);
    if jid >= 0 {
        return Ok(Some(jid));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(None)
    } else {
        Err(Error::io(format!("find jail {jail_name}"), e))
    }
}

/// Restricts the jail `jid` (and every process in it) to `cpus`: its cpuset, as
/// `cpuset -j JID -l LIST` sets it (`cpuset_setaffinity(2)` of `CPU_WHICH_JAIL`).
pub(crate) fn apply_cpuset(jid: i32, cpus: &[u32]) -> Result<()> {
    if cpus.is_empty() {
        return Err(Error::InvalidConfig("cpuset-cpus names no CPU".to_string()));
    }
    // SAFETY: cpuset_t is a plain array of integers, for which all zeros is valid (the
    // empty set, as CPU_ZERO makes it).
    let mut set: libc::cpuset_t = unsafe { mem::zeroed() };
    let capacity = mem::size_of::<libc::cpuset_t>() * 8;
    for &cpu in cpus {
        let cpu = cpu as usize;
        if cpu >= capacity {
            return Err(Error::InvalidConfig(format!(
                "invalid cpuset-cpus: CPU {cpu} is beyond the {capacity} a cpuset holds"
            )));
        }
        // SAFETY: `cpu` is below the set's number of bits, checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a live cpuset_t and the size passed is its own.
    let r = unsafe {
        libc::cpuset_setaffinity(
            libc::CPU_LEVEL_WHICH,
            libc::CPU_WHICH_JAIL,
            libc::id_t::from(jid),
            mem::size_of_val(&set),
            &set,
        )
    };
    if r != 0 {
        let list = cpus
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        return Err(Error::io(
            format!("set the cpuset of jail {jid} to CPUs {list}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
