//! Resource limits of a jailed process ([`crate::ExecConfig::rlimit`]).

/// A resource limit, as setrlimit(2) names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rlimit {
    /// `RLIMIT_CPU`: CPU time, in seconds.
    Cpu,
    /// `RLIMIT_FSIZE`: the size of a file written, in bytes.
    Fsize,
    /// `RLIMIT_DATA`: the data segment, in bytes.
    Data,
    /// `RLIMIT_STACK`: the stack, in bytes.
    Stack,
    /// `RLIMIT_CORE`: a core file, in bytes.
    Core,
    /// `RLIMIT_RSS`: the resident set, in bytes.
    Rss,
    /// `RLIMIT_NPROC`: processes of the user.
    Nproc,
    /// `RLIMIT_NOFILE`: open descriptors (one more than the highest).
    Nofile,
    /// `RLIMIT_MEMLOCK`: locked memory, in bytes.
    Memlock,
    /// `RLIMIT_AS`: the address space, in bytes.
    As,
    /// `RLIMIT_LOCKS`: file locks (Linux).
    Locks,
    /// `RLIMIT_SIGPENDING`: queued signals (Linux).
    Sigpending,
    /// `RLIMIT_MSGQUEUE`: bytes in POSIX message queues (Linux).
    Msgqueue,
    /// `RLIMIT_NICE`: the ceiling of the nice value (Linux).
    Nice,
    /// `RLIMIT_RTPRIO`: the ceiling of the real-time priority (Linux).
    Rtprio,
    /// `RLIMIT_RTTIME`: CPU time under real-time scheduling, in microseconds (Linux).
    Rttime,
}

impl Rlimit {
    /// Every limit, in the order of their index in failure records.
    pub(crate) const ALL: [Rlimit; 16] = [
        Rlimit::Cpu,
        Rlimit::Fsize,
        Rlimit::Data,
        Rlimit::Stack,
        Rlimit::Core,
        Rlimit::Rss,
        Rlimit::Nproc,
        Rlimit::Nofile,
        Rlimit::Memlock,
        Rlimit::As,
        Rlimit::Locks,
        Rlimit::Sigpending,
        Rlimit::Msgqueue,
        Rlimit::Nice,
        Rlimit::Rtprio,
        Rlimit::Rttime,
    ];

    /// Its name, `RLIMIT_NOFILE`.
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::Cpu => "RLIMIT_CPU",
            Rlimit::Fsize => "RLIMIT_FSIZE",
            Rlimit::Data => "RLIMIT_DATA",
            Rlimit::Stack => "RLIMIT_STACK",
            Rlimit::Core => "RLIMIT_CORE",
            Rlimit::Rss => "RLIMIT_RSS",
            Rlimit::Nproc => "RLIMIT_NPROC",
            Rlimit::Nofile => "RLIMIT_NOFILE",
            Rlimit::Memlock => "RLIMIT_MEMLOCK",
            Rlimit::As => "RLIMIT_AS",
            Rlimit::Locks => "RLIMIT_LOCKS",
            Rlimit::Sigpending => "RLIMIT_SIGPENDING",
            Rlimit::Msgqueue => "RLIMIT_MSGQUEUE",
            Rlimit::Nice => "RLIMIT_NICE",
            Rlimit::Rtprio => "RLIMIT_RTPRIO",
            Rlimit::Rttime => "RLIMIT_RTTIME",
        }
    }

    /// The limit named `name` (`RLIMIT_NOFILE`; the prefix and the case are optional).
    pub fn from_name(name: &str) -> Option<Rlimit> {
        let bare = |n: &str| match n.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("RLIMIT_") => n[7..].to_owned(),
            _ => n.to_owned(),
        };
        let wanted = bare(name);
        Rlimit::ALL
            .into_iter()
            .find(|r| bare(r.name()).eq_ignore_ascii_case(&wanted))
    }

    /// Its index in [`Rlimit::ALL`].
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn index(self) -> u32 {
        Rlimit::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| i as u32)
    }

    /// The resource number setrlimit(2) takes on Linux.
    #[cfg(target_os = "linux")]
    pub(crate) fn resource(self) -> Option<libc::c_int> {
        Some(match self {
            Rlimit::Cpu => libc::RLIMIT_CPU,
            Rlimit::Fsize => libc::RLIMIT_FSIZE,
            Rlimit::Data => libc::RLIMIT_DATA,
            Rlimit::Stack => libc::RLIMIT_STACK,
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::Rss => libc::RLIMIT_RSS,
            Rlimit::Nproc => libc::RLIMIT_NPROC,
            Rlimit::Nofile => libc::RLIMIT_NOFILE,
            Rlimit::Memlock => libc::RLIMIT_MEMLOCK,
            Rlimit::As => libc::RLIMIT_AS,
            Rlimit::Locks => libc::RLIMIT_LOCKS,
            Rlimit::Sigpending => libc::RLIMIT_SIGPENDING,
            Rlimit::Msgqueue => libc::RLIMIT_MSGQUEUE,
            Rlimit::Nice => libc::RLIMIT_NICE,
            Rlimit::Rtprio => libc::RLIMIT_RTPRIO,
            Rlimit::Rttime => libc::RLIMIT_RTTIME,
        } as libc::c_int)
    }

    /// The resource number setrlimit(2) takes on FreeBSD; `None` for Linux's own limits.
    #[cfg(target_os = "freebsd")]
    pub(crate) fn resource(self) -> Option<libc::c_int> {
        Some(match self {
            Rlimit::Cpu => libc::RLIMIT_CPU,
            Rlimit::Fsize => libc::RLIMIT_FSIZE,
            Rlimit::Data => libc::RLIMIT_DATA,
            Rlimit::Stack => libc::RLIMIT_STACK,
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::Rss => libc::RLIMIT_RSS,
            Rlimit::Nproc => libc::RLIMIT_NPROC,
            Rlimit::Nofile => libc::RLIMIT_NOFILE,
            Rlimit::Memlock => libc::RLIMIT_MEMLOCK,
            Rlimit::As => libc::RLIMIT_AS,
            Rlimit::Locks
            | Rlimit::Sigpending
            | Rlimit::Msgqueue
            | Rlimit::Nice
            | Rlimit::Rtprio
            | Rlimit::Rttime => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Rlimit::ALL {
            assert_eq!(Rlimit::from_name(r.name()), Some(r));
            assert_eq!(Rlimit::ALL[r.index() as usize], r);
        }
        assert_eq!(Rlimit::from_name("RLIMIT_NOFILE"), Some(Rlimit::Nofile));
        assert_eq!(Rlimit::from_name("nofile"), Some(Rlimit::Nofile));
        assert_eq!(Rlimit::from_name("RLIMIT_NOPE"), None);
        assert_eq!(Rlimit::from_name(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_numbers() {
        assert_eq!(Rlimit::Nofile.resource(), Some(7));
        assert_eq!(Rlimit::Rttime.resource(), Some(15));
        assert_eq!(Rlimit::Cpu.resource(), Some(0));
    }
}
