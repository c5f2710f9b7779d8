//! The FreeBSD backend's plan, platform-neutral so it is unit tested everywhere: which `-J`
//! parameters the backend does itself (like jail(8)) and the kernel parameter list of a new
//! jail.
#![cfg_attr(not(target_os = "freebsd"), allow(dead_code))]

use crate::config::{JailConfig, Lifetime, NetworkMode};
use crate::error::{Error, Result};
use crate::params::{is_pseudo_param, JailParam, KernelParam};

/// The pseudo parameters this backend does itself, like jail(8).
#[derive(Debug, Default)]
pub(crate) struct Pseudo {
    pub devfs: Option<bool>,
    pub clean: Option<bool>,
    pub user: Option<String>,
}

pub(crate) fn split_params(params: &[JailParam]) -> Result<(Pseudo, Vec<JailParam>)> {
    let mut pseudo = Pseudo::default();
    let mut kernel = Vec::new();
    for p in params {
        match p.name() {
            "mount.devfs" => pseudo.devfs = Some(p.as_bool()?),
            "exec.clean" => pseudo.clean = Some(p.as_bool()?),
            "exec.jail_user" => pseudo.user = Some(p.as_str()?.to_owned()),
            // Run by `Jail::stop` on every platform.
            "exec.stop" => {
                crate::params::stop_command(std::slice::from_ref(p))?;
            }
            n if is_pseudo_param(n) => {
                return Err(Error::UnsupportedParameter {
                    name: n.to_owned(),
                    platform: "FreeBSD",
                })
            }
            _ => kernel.push(p.clone()),
        }
    }
    Ok((pseudo, kernel))
}

/// The kernel parameters of a new jail: the defaults from the config, replaced by any `-J`
/// parameter of the same name.
pub(crate) fn jail_params(cfg: &JailConfig, user_params: Vec<JailParam>) -> Vec<JailParam> {
    let network: Vec<JailParam> = match &cfg.network {
        NetworkMode::Inherit | NetworkMode::Namespace(_) => ["ip4", "ip6"]
            .map(|p| JailParam::with_value(p, "inherit"))
            .into(),
        NetworkMode::Disabled => ["ip4", "ip6"]
            .map(|p| JailParam::with_value(p, "disable"))
            .into(),
        NetworkMode::JailParams(ps) => ps
            .iter()
            .map(|(k, v)| JailParam::with_value(k.clone(), v.clone()))
            .collect(),
    };
    let mut out = vec![
        JailParam::with_value("path", cfg.root.to_string_lossy()),
        JailParam::with_value(
            "host.hostname",
            cfg.hostname
                .clone()
                .or_else(|| cfg.name.clone())
                .unwrap_or_else(|| "kleene".into()),
        ),
    ];
    out.extend(network);
    // Kept until teardown so the jail (and its jid) outlives its processes.
    out.push(JailParam::with_bool("persist", true));
    if let Some(name) = &cfg.name {
        out.push(JailParam::with_value("name", name.clone()));
    }
    out.retain(|d| !user_params.iter().any(|u| u.name() == d.name()));
    out.extend(user_params);
    out
}

/// A jail is made persistent, so that it outlives the instant between its creation and
/// its command's attach. A jail of [`Lifetime::Processes`] then drops `persist` (the kernel
/// removes it with its last process), unless the caller's parameters ask for it: the
/// `jail_set(2)` update that does so, or `None`.
pub(crate) fn persist_update(
    lifetime: Lifetime,
    params: &[JailParam],
    jid: i32,
) -> Result<Option<Vec<KernelParam>>> {
    if lifetime != Lifetime::Processes {
        return Ok(None);
    }
    let mut persist = false;
    for p in params.iter().filter(|p| p.name() == "persist") {
        persist = p.as_bool()?;
    }
    if persist {
        return Ok(None);
    }
    Ok(Some(vec![
        KernelParam {
            name: c"jid".to_owned(),
            value: jid.to_ne_bytes().to_vec(),
        },
        KernelParam {
            name: c"nopersist".to_owned(),
            value: Vec::new(),
        },
    ]))
}

/// A running jail's update (`klee container update -J` on a running container): the
/// kernel parameters for `jail_set(2)` with `JAIL_UPDATE` (`jid` first). Parameters read
/// when used (`exec.stop`, `exec.clean`, `exec.jail_user`) need nothing; `mount.devfs` and
/// jail(8)'s own cannot change on a running jail and are refused by name.
pub(crate) fn live_update(params: &[JailParam], jid: i32) -> Result<Vec<KernelParam>> {
    let mut user = Vec::new();
    for p in params {
        match p.name() {
            "exec.stop" => {
                crate::params::stop_command(std::slice::from_ref(p))?;
            }
            "exec.clean" | "exec.jail_user" => {}
            n if n == "mount.devfs" || is_pseudo_param(n) => {
                return Err(Error::UnsupportedParameter {
                    name: n.to_owned(),
                    platform: "a running FreeBSD jail",
                })
            }
            _ => user.push(p.clone()),
        }
    }
    let mut out = find_jid(jid);
    out.extend(crate::params::kernel_params(&user)?);
    Ok(out)
}

/// The `jail_get(2)` parameters that find jail `jid` (a dying one is not found).
pub(crate) fn find_jid(jid: i32) -> Vec<KernelParam> {
    vec![KernelParam {
        name: c"jid".to_owned(),
        value: jid.to_ne_bytes().to_vec(),
    }]
}

/// An iovec list of name/value pairs for jail_set(2) and nmount(2). The strings it points
/// into must outlive it.
pub(crate) struct Iovecs {
    pub iov: Vec<libc::iovec>,
}

impl Iovecs {
    pub fn new(pairs: &[KernelParam], errmsg: Option<&mut [u8]>) -> Self {
        let mut iov = Vec::with_capacity(pairs.len() * 2 + 2);
        for p in pairs {
            iov.push(libc::iovec {
                iov_base: p.name.as_ptr() as *mut libc::c_void,
                iov_len: p.name.as_bytes_with_nul().len(),
            });
            iov.push(if p.value.is_empty() {
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }
            } else {
                libc::iovec {
                    iov_base: p.value.as_ptr() as *mut libc::c_void,
                    iov_len: p.value.len(),
                }
            });
        }
        if let Some(buf) = errmsg {
            iov.push(libc::iovec {
                iov_base: c"errmsg".as_ptr() as *mut libc::c_void,
                iov_len: c"errmsg".to_bytes_with_nul().len(),
            });
            iov.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        Iovecs { iov }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::params::kernel_params;

    fn ps(list: &[&str]) -> Vec<JailParam> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_jail_of_its_processes_drops_persist_unless_asked() {
        let none = persist_update(Lifetime::Command, &[], 7).unwrap();
        assert_eq!(none, None);
        let update = persist_update(Lifetime::Processes, &ps(&["allow.raw_sockets"]), 7)
            .unwrap()
            .unwrap();
        assert_eq!(update.len(), 2);
        assert_eq!(update[0].name.to_bytes(), b"jid");
        assert_eq!(update[0].value, 7i32.to_ne_bytes());
        assert_eq!(update[1].name.to_bytes(), b"nopersist");
        assert!(update[1].value.is_empty());
        // Asked for: kept; the last one given wins.
        assert_eq!(
            persist_update(Lifetime::Processes, &ps(&["persist"]), 7).unwrap(),
            None
        );
        assert!(
            persist_update(Lifetime::Processes, &ps(&["persist", "nopersist"]), 7)
                .unwrap()
                .is_some()
        );
        assert!(persist_update(Lifetime::Processes, &ps(&["persist=maybe"]), 7).is_err());
        assert_eq!(find_jid(3)[0].value, 3i32.to_ne_bytes());
    }

    #[test]
    fn a_running_jail_is_updated_with_its_kernel_parameters_only() {
        let update = live_update(
            &ps(&["allow.raw_sockets", "exec.stop=/bin/true", "securelevel=2"]),
            9,
        )
        .unwrap();
        let names: Vec<&[u8]> = update.iter().map(|k| k.name.to_bytes()).collect();
        assert_eq!(names, [&b"jid"[..], b"allow.raw_sockets", b"securelevel"]);
        assert_eq!(update[0].value, 9i32.to_ne_bytes());
        let err = live_update(&ps(&["mount.devfs"]), 9).unwrap_err();
        assert_eq!(
            err.to_string(),
            "jail parameter mount.devfs is not supported on a running FreeBSD jail"
        );
        assert!(live_update(&ps(&["exec.poststart=/bin/true"]), 9).is_err());
    }

    #[test]
    fn pseudo_parameters_are_taken_out() {
        let (pseudo, kernel) = split_params(&ps(&[
            "mount.nodevfs",
            "exec.clean=false",
            "exec.jail_user=www",
            "exec.stop=/bin/sh /etc/rc.shutdown",
            "allow.raw_sockets",
            "securelevel=2",
        ]))
        .unwrap();
        assert_eq!(pseudo.devfs, Some(false));
        assert_eq!(pseudo.clean, Some(false));
        assert_eq!(pseudo.user.as_deref(), Some("www"));
        assert_eq!(kernel, ps(&["allow.raw_sockets", "securelevel=2"]));
        let err = split_params(&ps(&["exec.poststart=/bin/true"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "jail parameter exec.poststart is not supported on FreeBSD"
        );
    }

    #[test]
    fn iovecs_pair_names_and_values() {
        let kernel =
            kernel_params(&ps(&["persist", "host.hostname=web", "securelevel=1"])).unwrap();
        let mut errmsg = [0u8; 16];
        let errptr = errmsg.as_ptr();
        let iov = Iovecs::new(&kernel, Some(&mut errmsg));
        assert_eq!(iov.iov.len(), 8);
        let name = |i: usize| {
            // SAFETY: the test's iovecs point at NUL-terminated names that `kernel` owns.
            unsafe { std::ffi::CStr::from_ptr(iov.iov[i].iov_base as *const std::ffi::c_char) }
        };
        assert_eq!(name(0).to_bytes(), b"persist");
        assert_eq!(iov.iov[0].iov_len, 8); // with the NUL
        assert!(iov.iov[1].iov_base.is_null());
        assert_eq!(iov.iov[1].iov_len, 0);
        assert_eq!(name(2).to_bytes(), b"host.hostname");
        assert_eq!(iov.iov[3].iov_len, 4); // "web\0"
        assert_eq!(iov.iov[5].iov_len, std::mem::size_of::<i32>());
        assert_eq!(name(6).to_bytes(), b"errmsg");
        assert_eq!(iov.iov[7].iov_base as *const u8, errptr);
        assert_eq!(iov.iov[7].iov_len, 16);
    }

    #[test]
    fn defaults_and_overrides() {
        let cfg = JailConfig::new("/zroot/c/abc")
            .name("abc")
            .network(NetworkMode::Disabled);
        let params = jail_params(&cfg, ps(&["ip6=new", "allow.sysvipc"]));
        let text: Vec<String> = params.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "path=/zroot/c/abc",
                "host.hostname=abc",
                "ip4=disable",
                "persist",
                "name=abc",
                "ip6=new",
                "allow.sysvipc",
            ]
        );
        let kernel = kernel_params(&params).unwrap();
        assert_eq!(kernel[0].value, b"/zroot/c/abc\0".to_vec());
        assert_eq!(kernel[2].value, 0i32.to_ne_bytes().to_vec());
        assert!(kernel[3].value.is_empty());
        assert_eq!(kernel[5].value, 1i32.to_ne_bytes().to_vec());
        let cfg = JailConfig::new("/r").hostname("h");
        let text: Vec<String> = jail_params(&cfg, vec![])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            vec![
                "path=/r",
                "host.hostname=h",
                "ip4=inherit",
                "ip6=inherit",
                "persist"
            ]
        );
        // A network's parameters replace ip4/ip6; a user's -J still wins.
        let cfg = JailConfig::new("/r")
            .hostname("h")
            .network(NetworkMode::JailParams(vec![
                ("ip4.addr".into(), "kleene0|10.13.0.2/24".into()),
                ("ip6".into(), "disable".into()),
            ]));
        let text: Vec<String> = jail_params(&cfg, ps(&["ip6=new"]))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            vec![
                "path=/r",
                "host.hostname=h",
                "ip4.addr=kleene0|10.13.0.2/24",
                "persist",
                "ip6=new"
            ]
        );
    }
}
