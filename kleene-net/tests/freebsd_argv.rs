//! The FreeBSD backend's pure half, through the public API: the commands Kleene's network
//! scenarios need, and the parsers of what FreeBSD prints back. Runs on every platform.

mod freebsd {
    use std::net::IpAddr;

    use ipnet::IpNet;
    use kleene_net::freebsd::jail::{self, IpnetAddress};
    use kleene_net::freebsd::{argv, parse, Command, Epair, Error, Family, IfName};

    fn name(s: &str) -> IfName {
        IfName::new(s).expect("valid test name")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid test network")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid test address")
    }

    fn argvs(cmds: &[Command]) -> Vec<Vec<String>> {
        cmds.iter().map(Command::argv).collect()
    }

    /// `klee network create --subnet 10.2.3.0/24 testnet` and an ipnet container on it.
    #[test]
    fn loopback_network_with_an_ipnet_container() {
        let kleene0 = name("kleene0");
        let cmds = [
            argv::create_loopback(&kleene0),
            argv::interface_up(&kleene0),
        ];
        assert_eq!(
            argvs(&cmds),
            [
                vec!["/sbin/ifconfig", "lo", "create", "name", "kleene0"],
                vec!["/sbin/ifconfig", "kleene0", "up"],
            ]
        );
        let params = jail::ipnet(&[IpnetAddress {
            interface: kleene0.clone(),
            address: net("10.2.3.2/32"),
        }]);
        assert_eq!(
            jail::to_args(&params),
            ["ip4.addr=kleene0|10.2.3.2/32", "ip6=disable"]
        );
        assert_eq!(
            argv::remove_alias(&kleene0, &ip("10.2.3.2")).argv(),
            ["/sbin/ifconfig", "kleene0", "inet", "10.2.3.2", "-alias"]
        );
        assert_eq!(
            argv::destroy_interface(&kleene0).argv(),
            ["/sbin/ifconfig", "kleene0", "destroy"]
        );
    }

    /// `klee network create -t bridge --subnet 10.4.6.0/24 --subnet6 fd00:4:6::/64 testvnet`
    /// and a vnet container on it.
    #[test]
    fn bridge_network_with_a_vnet_container() {
        let bridge = name("kleene1");
        let setup = [
            argv::create_bridge(&bridge),
            argv::add_alias(&bridge, &net("10.4.6.1/24")),
            argv::add_alias(&bridge, &net("fd00:4:6::1/64")),
            argv::interface_up(&bridge),
        ];
        assert_eq!(
            argvs(&setup),
            [
                vec!["/sbin/ifconfig", "bridge", "create", "name", "kleene1"],
                vec!["/sbin/ifconfig", "kleene1", "inet", "10.4.6.1/24", "alias"],
                vec![
                    "/sbin/ifconfig",
                    "kleene1",
                    "inet6",
                    "fd00:4:6::1",
                    "prefixlen",
                    "64",
                    "alias"
                ],
                vec!["/sbin/ifconfig", "kleene1", "up"],
            ]
        );

        assert_eq!(argv::create_epair().args, ["epair", "create"]);
        let epair = parse::epair_create("epair0a\n").expect("ifconfig's answer");
        let host_side = [
            argv::bridge_add_member(&bridge, epair.a()),
            argv::interface_up(epair.a()),
        ];
        assert_eq!(
            argvs(&host_side),
            [
                vec!["/sbin/ifconfig", "kleene1", "addm", "epair0a"],
                vec!["/sbin/ifconfig", "epair0a", "up"],
            ]
        );
        assert_eq!(
            jail::to_args(&jail::vnet(std::slice::from_ref(&epair))),
            ["vnet=new", "vnet.interface=epair0b"]
        );
        let in_jail = [
            argv::set_address(epair.b(), &net("10.4.6.2/24")),
            argv::route_add_default(&ip("10.4.6.1")),
        ];
        assert_eq!(
            argvs(&in_jail),
            [
                vec!["/sbin/ifconfig", "epair0b", "inet", "10.4.6.2/24"],
                vec!["/sbin/route", "add", "-inet", "default", "10.4.6.1"],
            ]
        );
        let teardown = [
            argv::reclaim_vnet_interface(epair.b(), "173a1a8d848d").expect("valid jail"),
            argv::bridge_delete_member(&bridge, epair.a()),
            argv::destroy_interface(epair.a()),
        ];
        assert_eq!(
            argvs(&teardown),
            [
                vec!["/sbin/ifconfig", "epair0b", "-vnet", "173a1a8d848d"],
                vec!["/sbin/ifconfig", "kleene1", "deletem", "epair0a"],
                vec!["/sbin/ifconfig", "epair0a", "destroy"],
            ]
        );
    }

    #[test]
    fn epair_renamed_for_a_container() {
        let epair = Epair::from_a_side("epair5a").expect("valid");
        let (cmds, renamed) = argv::rename_epair(&epair, "kl173a1a8d").expect("short enough");
        assert_eq!(
            argvs(&cmds),
            [
                vec!["/sbin/ifconfig", "epair5a", "name", "kl173a1a8da"],
                vec!["/sbin/ifconfig", "epair5b", "name", "kl173a1a8db"],
            ]
        );
        assert_eq!(renamed.b().as_str(), "kl173a1a8db");
        assert!(argv::rename_epair(&epair, "kleene-173a1a8d848d").is_err());
    }

    #[test]
    fn drivers_without_networks() {
        assert_eq!(
            jail::to_args(&jail::disabled()),
            ["ip4=disable", "ip6=disable"]
        );
        assert_eq!(jail::to_args(&jail::host()), ["ip4=inherit", "ip6=inherit"]);
    }

    #[test]
    fn pf_and_forwarding() {
        let ruleset = "nat on em0 inet from 10.2.3.0/24 to any -> (em0)\npass all\n";
        let check = argv::pf_check(ruleset);
        let load = argv::pf_load(ruleset);
        assert_eq!(check.argv(), ["/sbin/pfctl", "-n", "-f", "-"]);
        assert_eq!(load.argv(), ["/sbin/pfctl", "-f", "-"]);
        assert_eq!(load.stdin.as_deref(), Some(ruleset));
        assert_eq!(argv::pf_enable().argv(), ["/sbin/pfctl", "-e"]);
        assert!(parse::pf_already_enabled("pfctl: pf already enabled\n"));
        assert_eq!(
            argvs(&[
                argv::enable_ipv4_forwarding(),
                argv::enable_ipv6_forwarding()
            ]),
            [
                vec!["/sbin/sysctl", "net.inet.ip.forwarding=1"],
                vec!["/sbin/sysctl", "net.inet6.ip6.forwarding=1"],
            ]
        );
    }

    #[test]
    fn interface_existence_from_ifconfig_l() {
        assert_eq!(argv::list_interfaces().argv(), ["/sbin/ifconfig", "-l"]);
        let out = "em0 lo0 pflog0 kleene0 kleene1 epair0a\n";
        assert!(parse::interface_listed(out, &name("kleene1")));
        assert!(!parse::interface_listed(out, &name("kleene2")));
        assert_eq!(parse::interface_list(out).len(), 6);
    }

    #[test]
    fn default_route_interface() {
        assert_eq!(argv::routing_table().argv(), ["/usr/bin/netstat", "-rn"]);
        let netstat = "Routing tables

Internet:
Destination        Gateway            Flags     Netif Expire
default            10.0.2.2           UGS         em0
10.0.2.0/24        link#1             U           em0
10.0.2.15          link#2             UHS         lo0
127.0.0.1          link#2             UH          lo0

Internet6:
Destination                       Gateway                       Flags     Netif Expire
::/96                             ::1                           URS         lo0
::1                               link#2                        UHS         lo0
fe80::%lo0/64                     link#2                        U           lo0
";
        assert_eq!(
            parse::netstat_default_interface(netstat, Family::Inet).as_deref(),
            Some("em0")
        );
        assert_eq!(
            parse::netstat_default_interface(netstat, Family::Inet6),
            None
        );

        let route_get = "   route to: default
destination: default
       mask: default
    gateway: 192.168.1.1
        fib: 0
  interface: vtnet0
      flags: <UP,GATEWAY,DONE,STATIC>
 recvpipe  sendpipe  ssthresh  rtt,msec    mtu        weight    expire
       0         0         0         0      1500         1         0
";
        assert_eq!(
            argv::route_get_default(Family::Inet).argv(),
            ["/sbin/route", "-n", "get", "-inet", "default"]
        );
        assert_eq!(
            parse::route_get_interface(route_get).as_deref(),
            Some("vtnet0")
        );
    }

    #[test]
    fn names_are_checked_before_any_command_is_built() {
        assert!(matches!(
            IfName::new("kleene-network-0"),
            Err(Error::Invalid { .. })
        ));
        assert!(IfName::new("kleene0 destroy").is_err());
        assert!(IfName::new("-l").is_err());
        assert!(IfName::new("abcdefghijklmno").is_ok());
    }
}
