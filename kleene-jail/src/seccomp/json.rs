//! Docker's (and the OCI runtime specification's `linux.seccomp`) JSON profiles.

use serde_json::{Map, Value};

use super::arch::{known_anywhere, Arch};
use super::profile::{Action, ArgCondition, CompareOp, RuleFilter, SeccompProfile, SyscallRule};
use super::SeccompError;

const EPERM: u16 = 1;

fn field(place: impl Into<String>, reason: impl Into<String>) -> SeccompError {
    SeccompError::Field {
        place: place.into(),
        reason: reason.into(),
    }
}

fn join(place: &str, key: &str) -> String {
    if place.is_empty() {
        key.to_owned()
    } else {
        format!("{place}.{key}")
    }
}

/// `obj[key]`, `None` when missing or null.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn string<'a>(v: &'a Value, place: &str) -> Result<&'a str, SeccompError> {
    v.as_str().ok_or_else(|| field(place, "expected a string"))
}

fn unsigned(v: &Value, place: &str) -> Result<u64, SeccompError> {
    v.as_u64()
        .ok_or_else(|| field(place, "expected an unsigned integer"))
}

fn array<'a>(v: &'a Value, place: &str) -> Result<&'a Vec<Value>, SeccompError> {
    v.as_array()
        .ok_or_else(|| field(place, "expected an array"))
}

fn object<'a>(v: &'a Value, place: &str) -> Result<&'a Map<String, Value>, SeccompError> {
    v.as_object()
        .ok_or_else(|| field(place, "expected an object"))
}

fn errno(obj: &Map<String, Value>, key: &str, place: &str) -> Result<Option<u16>, SeccompError> {
    let Some(v) = get(obj, key) else {
        return Ok(None);
    };
    let p = join(place, key);
    let n = unsigned(v, &p)?;
    u16::try_from(n)
        .map(Some)
        .map_err(|_| field(p, format!("{n} is out of range (0 to 65535)")))
}

/// The action named `name`; `ret` is the errno (or trace message) given with it.
fn action(name: &str, ret: Option<u16>, place: &str) -> Result<Action, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(ret.unwrap_or(EPERM)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::Kill,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(ret.unwrap_or(EPERM)),
        "SCMP_ACT_NOTIFY" => {
            return Err(SeccompError::UnsupportedAction {
                action: name.to_owned(),
                place: place.to_owned(),
            })
        }
        _ => {
            return Err(SeccompError::UnknownAction {
                action: name.to_owned(),
                place: place.to_owned(),
            })
        }
    })
}

fn arch(v: &Value, place: &str) -> Result<Arch, SeccompError> {
    let name = string(v, place)?;
    name.parse()
        .map_err(|()| SeccompError::UnknownArchitecture {
            arch: name.to_owned(),
            place: place.to_owned(),
        })
}

fn filter(v: Option<&Value>, place: &str) -> Result<RuleFilter, SeccompError> {
    let mut f = RuleFilter::default();
    let Some(v) = v else {
        return Ok(f);
    };
    let obj = object(v, place)?;
    if let Some(caps) = get(obj, "caps") {
        let p = join(place, "caps");
        for (i, c) in array(caps, &p)?.iter().enumerate() {
            let p = format!("{p}[{i}]");
            let name = string(c, &p)?;
            let n = crate::caps::capability_number(name).ok_or_else(|| {
                SeccompError::UnknownCapability {
                    cap: name.to_owned(),
                    place: p.clone(),
                }
            })?;
            f.caps |= 1u64 << n;
        }
    }
    if let Some(arches) = get(obj, "arches") {
        let p = join(place, "arches");
        for (i, a) in array(arches, &p)?.iter().enumerate() {
            f.arches.push(string(a, &format!("{p}[{i}]"))?.to_owned());
        }
    }
    if let Some(k) = get(obj, "minKernel") {
        f.min_kernel = Some(string(k, &join(place, "minKernel"))?.to_owned());
    }
    Ok(f)
}

fn arg(v: &Value, place: &str) -> Result<ArgCondition, SeccompError> {
    let obj = object(v, place)?;
    let need = |key: &str| get(obj, key).ok_or_else(|| field(join(place, key), "missing"));
    let index = unsigned(need("index")?, &join(place, "index"))?;
    if index > 5 {
        return Err(SeccompError::ArgIndex {
            index,
            place: place.to_owned(),
        });
    }
    let value = unsigned(need("value")?, &join(place, "value"))?;
    let value_two = match get(obj, "valueTwo") {
        Some(v) => unsigned(v, &join(place, "valueTwo"))?,
        None => 0,
    };
    let op_name = string(need("op")?, &join(place, "op"))?;
    let op = CompareOp::from_scmp(op_name).ok_or_else(|| SeccompError::UnknownOperator {
        op: op_name.to_owned(),
        place: place.to_owned(),
    })?;
    Ok(ArgCondition {
        index: index as u8,
        value,
        value_two,
        op,
    })
}

fn rule(v: &Value, place: &str) -> Result<SyscallRule, SeccompError> {
    let obj = object(v, place)?;
    let mut names = Vec::new();
    match (get(obj, "name"), get(obj, "names")) {
        (Some(_), Some(_)) => {
            return Err(field(place, "both \"name\" and \"names\" are given"));
        }
        (Some(n), None) => names.push(string(n, &join(place, "name"))?.to_owned()),
        (None, Some(ns)) => {
            let p = join(place, "names");
            for (i, n) in array(ns, &p)?.iter().enumerate() {
                names.push(string(n, &format!("{p}[{i}]"))?.to_owned());
            }
        }
        (None, None) => return Err(field(join(place, "names"), "missing")),
    }
    for name in &names {
        if !known_anywhere(name) {
            return Err(SeccompError::UnknownSyscall {
                name: name.clone(),
                place: place.to_owned(),
            });
        }
    }
    let act_name = get(obj, "action").ok_or_else(|| field(join(place, "action"), "missing"))?;
    let act_name = string(act_name, &join(place, "action"))?;
    let action = action(act_name, errno(obj, "errnoRet", place)?, place)?;
    let mut args = Vec::new();
    if let Some(a) = get(obj, "args") {
        let p = join(place, "args");
        for (i, a) in array(a, &p)?.iter().enumerate() {
            args.push(arg(a, &format!("{p}[{i}]"))?);
        }
    }
    Ok(SyscallRule {
        names,
        action,
        args,
        includes: filter(get(obj, "includes"), &join(place, "includes"))?,
        excludes: filter(get(obj, "excludes"), &join(place, "excludes"))?,
    })
}

fn flag(name: &str, place: &str) -> Result<u32, SeccompError> {
    Ok(match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => 1,
        "SECCOMP_FILTER_FLAG_LOG" => 2,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
        _ => return Err(field(place, format!("unsupported filter flag \"{name}\""))),
    })
}

impl SeccompProfile {
    /// Parses a profile in Docker's JSON format (what `docker run --security-opt
    /// seccomp=profile.json` takes), which is also the OCI runtime specification's
    /// `linux.seccomp` object:
    ///
    /// - `defaultAction` (required) and `defaultErrnoRet`;
    /// - `architectures` or Docker's `archMap` (`architecture`, `subArchitectures`);
    /// - `flags` (`SECCOMP_FILTER_FLAG_LOG`, `_SPEC_ALLOW`, `_TSYNC`);
    /// - `syscalls`: `names` (or Docker's older `name`), `action`, `errnoRet`, `args`
    ///   (`index`, `value`, `valueTwo`, `op`), and Docker's `includes`/`excludes`
    ///   (`caps`, `arches`, `minKernel`), evaluated when the profile is compiled against
    ///   [`SeccompProfile::capabilities`] (Docker's default set, unless changed with
    ///   [`SeccompProfile::with_capabilities`]) and the target architecture. `minKernel`
    ///   is ignored: the rule applies on any kernel.
    ///
    /// Actions are `SCMP_ACT_ALLOW`, `_ERRNO` (`errnoRet`, default `EPERM`), `_KILL` and
    /// `_KILL_THREAD` (kill the thread, as in libseccomp and runc), `_KILL_PROCESS`,
    /// `_TRAP`, `_LOG` and `_TRACE` (`errnoRet` is the message, default 1);
    /// `SCMP_ACT_NOTIFY` is refused. `errnoRet` is ignored with other actions. Operators
    /// are `SCMP_CMP_NE`, `_LT`, `_LE`, `_EQ`, `_GE`, `_GT` and `_MASKED_EQ`. Other
    /// fields (`comment`, `listenerPath`, ...) are ignored.
    ///
    /// A system call name that no architecture has is an error; one that the target
    /// lacks is skipped when compiling.
    pub fn from_json(text: &str) -> Result<Self, SeccompError> {
        let v: Value = serde_json::from_str(text).map_err(|e| SeccompError::Json(e.to_string()))?;
        let obj = object(&v, "the profile")?;
        let default = get(obj, "defaultAction").ok_or_else(|| field("defaultAction", "missing"))?;
        let default = string(default, "defaultAction")?;
        let default_action = action(default, errno(obj, "defaultErrnoRet", "")?, "defaultAction")?;
        let mut profile = SeccompProfile::new(default_action);
        match (get(obj, "architectures"), get(obj, "archMap")) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "archMap",
                    "both \"architectures\" and \"archMap\" are given",
                ))
            }
            (Some(a), None) => {
                for (i, a) in array(a, "architectures")?.iter().enumerate() {
                    profile
                        .architectures
                        .push(arch(a, &format!("architectures[{i}]"))?);
                }
            }
            (None, Some(m)) => {
                for (i, e) in array(m, "archMap")?.iter().enumerate() {
                    let p = format!("archMap[{i}]");
                    let e = object(e, &p)?;
                    let main = get(e, "architecture")
                        .ok_or_else(|| field(join(&p, "architecture"), "missing"))?;
                    let mut arches = vec![arch(main, &join(&p, "architecture"))?];
                    if let Some(subs) = get(e, "subArchitectures") {
                        let p = join(&p, "subArchitectures");
                        for (j, s) in array(subs, &p)?.iter().enumerate() {
                            arches.push(arch(s, &format!("{p}[{j}]"))?);
                        }
                    }
                    for a in arches {
                        if !profile.architectures.contains(&a) {
                            profile.architectures.push(a);
                        }
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(flags) = get(obj, "flags") {
            for (i, f) in array(flags, "flags")?.iter().enumerate() {
                let p = format!("flags[{i}]");
                profile.flags |= flag(string(f, &p)?, &p)?;
            }
        }
        if let Some(rules) = get(obj, "syscalls") {
            for (i, r) in array(rules, "syscalls")?.iter().enumerate() {
                profile.syscalls.push(rule(r, &format!("syscalls[{i}]"))?);
            }
        }
        Ok(profile)
    }
}
