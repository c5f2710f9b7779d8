//! config.json's `linux.resources`, `linux.cgroupsPath` and `linux.seccomp`, as
//! kleene-jail's resource group, limits and seccomp profile. What a field asks that this
//! runtime cannot enforce is refused by name.

use oci_spec::runtime::{Linux, LinuxResources};

use kleene_jail::{DeviceRule, Resources, SeccompProfile};

use crate::error::{Error, Result};

/// The parent of containers' cgroups when config.json names none.
pub const DEFAULT_CGROUP_PARENT: &str = "kleene-runtime";

/// Where the container's cgroup goes: (parent, name) below the hierarchy roots.
pub fn cgroup_path(l: &Linux, id: &str) -> Result<(String, String)> {
    let Some(path) = l.cgroups_path().as_ref() else {
        return Ok((DEFAULT_CGROUP_PARENT.to_string(), id.to_string()));
    };
    let text = path.to_string_lossy();
    if text.contains(':') {
        return Err(Error::unsupported(
            "linux.cgroupsPath",
            "systemd's slice:prefix:name form (run without --systemd-cgroup)",
        ));
    }
    let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => Err(Error::invalid("linux.cgroupsPath", "names no group")),
        [name] => Ok((DEFAULT_CGROUP_PARENT.to_string(), name.to_string())),
        [parent @ .., name] => Ok((parent.join("/"), name.to_string())),
    }
}

/// The limits `linux.resources` asks for.
pub fn resources(r: &LinuxResources) -> Result<Resources> {
    let mut out = Resources::new();
    if let Some(m) = r.memory() {
        let field = |f: &str| format!("linux.resources.memory.{f}");
        if let Some(limit) = m.limit() {
            if limit > 0 {
                out.memory = Some(limit as u64);
            }
        }
        if let Some(swap) = m.swap() {
            if swap != 0 {
                out.memory_swap = Some(swap);
            }
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::unsupported(
                field("disableOOMKiller"),
                "a container is killed when over its memory limit",
            ));
        }
        if m.kernel().is_some_and(|k| k > 0) || m.kernel_tcp().is_some_and(|k| k > 0) {
            return Err(Error::unsupported(
                field("kernel"),
                "kernel memory limits (gone from Linux)",
            ));
        }
        // `reservation` (a soft limit) and `swappiness` only shape reclaim: left to the
        // kernel's defaults, which weakens no limit.
    }
    if let Some(c) = r.cpu() {
        let field = |f: &str| format!("linux.resources.cpu.{f}");
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(Error::unsupported(
                field("realtimeRuntime"),
                "real-time CPU time",
            ));
        }
        if c.shares().is_some_and(|s| s > 0) {
            out.cpu_shares = c.shares();
        }
        match (c.quota(), c.period()) {
            (Some(q), p) if q > 0 => {
                out.cpu_quota = Some(q);
                out.cpu_period = Some(p.unwrap_or(kleene_jail::CPU_PERIOD_US));
            }
            (_, Some(p)) if p > 0 => out.cpu_period = Some(p),
            _ => {}
        }
        out.cpuset_cpus = c.cpus().clone().filter(|s| !s.is_empty());
        out.cpuset_mems = c.mems().clone().filter(|s| !s.is_empty());
    }
    if let Some(p) = r.pids() {
        if p.limit() > 0 {
            out.pids = Some(p.limit());
        }
    }
    for (i, d) in r.devices().iter().flatten().enumerate() {
        let kind = match d.typ().map(|t| t.as_str().to_string()).as_deref() {
            None | Some("a") => 'a',
            Some("c") => 'c',
            Some("b") => 'b',
            Some(other) => {
                return Err(Error::invalid(
                    format!("linux.resources.devices[{i}].type"),
                    format!("{other:?} is not a, b or c"),
                ))
            }
        };
        let number = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                    Error::invalid(
                        format!("linux.resources.devices[{i}].{what}"),
                        format!("{n} is not a device number"),
                    )
                }),
            }
        };
        out.devices.push(DeviceRule {
            allow: d.allow(),
            kind,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            access: d.access().clone().unwrap_or_else(|| "rwm".to_string()),
        });
    }
    if !out.devices.is_empty() {
        // As runc: after config.json's rules, the devices every container needs.
        out.devices.extend(runc_allowed_devices());
    }
    for (field, set) in [
        ("blockIO", r.block_io().is_some()),
        (
            "hugepageLimits",
            r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
        ),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().as_ref().is_some_and(|h| !h.is_empty())),
        (
            "unified",
            r.unified().as_ref().is_some_and(|h| !h.is_empty()),
        ),
    ] {
        if set {
            return Err(Error::unsupported(
                format!("linux.resources.{field}"),
                "not enforced by this version",
            ));
        }
    }
    out.validate()
        .map_err(|e| Error::invalid("linux.resources", e.to_string()))?;
    Ok(out)
}

/// The rules runc adds after config.json's: mknod of anything, and the standard
/// character devices (null, zero, full, random, urandom, tty, the ptys and ptmx, tun).
fn runc_allowed_devices() -> Vec<DeviceRule> {
    DeviceRule::docker_defaults()
        .into_iter()
        .filter(|d| d.allow && !(d.major == Some(5) && d.minor == Some(1)))
        .collect()
}

/// The seccomp profile `linux.seccomp` describes (the spec's field names are Docker's).
pub fn seccomp(l: &Linux) -> Result<Option<SeccompProfile>> {
    let Some(s) = l.seccomp() else {
        return Ok(None);
    };
    let text =
        serde_json::to_string(s).map_err(|e| Error::invalid("linux.seccomp", e.to_string()))?;
    let profile = SeccompProfile::from_json(&text)
        .map_err(|e| Error::invalid("linux.seccomp", e.to_string()))?;
    // Compiled here so a bad profile fails before anything is made.
    profile
        .compile()
        .map_err(|e| Error::invalid("linux.seccomp", e.to_string()))?;
    Ok(Some(profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).expect("linux")
    }

    #[test]
    fn cgroups_paths_split_into_parent_and_name() {
        let l = linux(r#"{"cgroupsPath": "/machine/abc"}"#);
        assert_eq!(
            cgroup_path(&l, "x").expect("path"),
            ("machine".into(), "abc".into())
        );
        let l = linux(r#"{"cgroupsPath": "/a/b/c"}"#);
        assert_eq!(
            cgroup_path(&l, "x").expect("path"),
            ("a/b".into(), "c".into())
        );
        let l = linux(r#"{}"#);
        assert_eq!(
            cgroup_path(&l, "x").expect("path"),
            ("kleene-runtime".into(), "x".into())
        );
        let l = linux(r#"{"cgroupsPath": "system.slice:docker:abc"}"#);
        assert!(cgroup_path(&l, "x").is_err());
    }

    #[test]
    fn resources_as_podman_and_containerd_send_them() {
        let r: LinuxResources = serde_json::from_str(
            r#"{
                "devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 136, "access": "rwm"}],
                "memory": {"limit": 67108864, "swap": 67108864},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
                "pids": {"limit": 20}
            }"#,
        )
        .expect("resources");
        let out = resources(&r).expect("mapped");
        assert_eq!(out.memory, Some(64 << 20));
        assert_eq!(out.memory_swap, Some(64 << 20));
        assert_eq!(
            (out.cpu_quota, out.cpu_period),
            (Some(50_000), Some(100_000))
        );
        assert_eq!(out.cpu_shares, Some(512));
        assert_eq!(out.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(out.pids, Some(20));
        let lines: Vec<String> = out.devices.iter().map(|d| d.line()).collect();
        assert_eq!(
            lines[..5],
            [
                "a *:* rwm",
                "c 1:3 rwm",
                "c 136:* rwm",
                "c *:* m",
                "b *:* m"
            ]
        );
        assert!(!out.devices[0].allow);
        assert!(
            !lines.contains(&"c 5:1 rwm".to_string()),
            "runc allows no console"
        );
    }

    #[test]
    fn what_cannot_be_enforced_is_refused_by_name() {
        for (json, field) in [
            (
                r#"{"memory": {"disableOOMKiller": true}}"#,
                "disableOOMKiller",
            ),
            (r#"{"blockIO": {"weight": 10}}"#, "blockIO"),
            (r#"{"cpu": {"realtimeRuntime": 5}}"#, "realtimeRuntime"),
            (r#"{"memory": {"limit": 1024}}"#, "memory limit"),
        ] {
            let r: LinuxResources = serde_json::from_str(json).expect("resources");
            let e = resources(&r).expect_err(json).to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
    }

    #[test]
    fn seccomp_profiles_are_read_and_compiled() {
        let l = linux(
            r#"{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                 "architectures": ["SCMP_ARCH_X86_64"],
                 "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}}"#,
        );
        assert!(seccomp(&l).expect("profile").is_some());
        let l = linux(
            r#"{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["no_such_call_anywhere"], "action": "SCMP_ACT_ERRNO"}]}}"#,
        );
        let e = seccomp(&l).expect_err("unknown call").to_string();
        assert!(
            e.contains("linux.seccomp") && e.contains("no_such_call_anywhere"),
            "{e}"
        );
    }
}
