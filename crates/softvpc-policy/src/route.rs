//! Route lookup: the subnet's route table (its explicit association, else the VPC's main table),
//! longest-prefix match over a prefix trie (`prefix-trie`), with a `local` route for every VPC
//! CIDR.
//!
//! The verdict says where the packet goes and names the route and the table that decided:
//! local (the VPC itself: the mapping finds the ENI), a network interface (a middlebox: the
//! packet goes to that ENI), a peering connection, or dropped: a blackhole route (its target is
//! gone, AWS's route state `blackhole`), no route, or an internet/NAT gateway target, which is
//! not on the wire yet and gets its own verdict so the drop is counted apart.
//!
//! Routes apply only to packets sent to the subnet router; frames switched inside a subnet never
//! reach this lookup (AWS: route tables only apply to packets sent to the router's MAC).

use core::net::Ipv4Addr;
use std::collections::HashMap;

use ipnet::Ipv4Net;
use prefix_trie::PrefixMap;

use crate::Generation;

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The VPC itself (`local`).
    Local,
    /// An ENI (`eni-...`): a middlebox.
    NetworkInterface(String),
    /// A peering connection (`pcx-...`).
    VpcPeeringConnection(String),
    /// An internet gateway (`igw-...`).
    InternetGateway(String),
    /// A NAT gateway (`nat-...`).
    NatGateway(String),
}

/// AWS's route state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteState {
    /// The target is there.
    Active,
    /// The target is gone (deleted ENI, detached gateway, deleted peering): traffic is dropped.
    Blackhole,
}

/// One route: a plain input the mapping service can carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination CIDR.
    pub destination: Ipv4Net,
    /// Target.
    pub target: Target,
    /// Active or blackhole.
    pub state: RouteState,
}

/// A gateway kind whose data path is not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gateway {
    /// Internet gateway.
    Internet,
    /// NAT gateway.
    Nat,
}

/// Where the packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteVerdict<'a> {
    /// Inside the VPC: deliver to the ENI that holds the destination.
    Local,
    /// To this ENI (middlebox), whatever the destination.
    NetworkInterface(&'a str),
    /// Over this peering connection.
    Peering(&'a str),
    /// A blackhole route: dropped (`blackhole`).
    Blackhole,
    /// An internet or NAT gateway target: not yet on the wire, dropped with its own reason.
    NotYetOnWire(Gateway, &'a str),
    /// No route covers the destination (`no_route`).
    NoRoute,
}

/// The decision and what made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecision<'a> {
    /// Where it goes.
    pub verdict: RouteVerdict<'a>,
    /// The route that matched (`None` with [`RouteVerdict::NoRoute`]).
    pub route: Option<&'a Route>,
    /// The table (`rtb-...`) that was consulted.
    pub table: &'a str,
}

/// One route table, compiled.
#[derive(Debug, Clone)]
pub struct RouteTable {
    id: String,
    generation: Generation,
    routes: Vec<Route>,
    trie: PrefixMap<Ipv4Net, usize>,
}

impl RouteTable {
    /// Compiles table `id` of a VPC with `vpc_cidrs`. Every VPC CIDR gets a `local` route unless
    /// the table has a route for exactly that CIDR (AWS lets the local route's target be
    /// replaced by an ENI). Of two routes with one destination the first given wins.
    pub fn compile(
        id: &str,
        vpc_cidrs: &[Ipv4Net],
        routes: impl IntoIterator<Item = Route>,
        generation: Generation,
    ) -> RouteTable {
        let mut all: Vec<Route> = Vec::new();
        let mut trie = PrefixMap::new();
        for r in routes {
            let r = Route {
                destination: r.destination.trunc(),
                ..r
            };
            if !trie.contains_key(&r.destination) {
                trie.insert(r.destination, all.len());
                all.push(r);
            }
        }
        for c in vpc_cidrs {
            let c = c.trunc();
            if !trie.contains_key(&c) {
                trie.insert(c, all.len());
                all.push(Route {
                    destination: c,
                    target: Target::Local,
                    state: RouteState::Active,
                });
            }
        }
        RouteTable {
            id: id.to_string(),
            generation,
            routes: all,
            trie,
        }
    }

    /// The table's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The generation it was compiled under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Every route, local ones included.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The longest-prefix match for `dst`.
    pub fn lookup(&self, dst: Ipv4Addr) -> RouteDecision<'_> {
        let Some((_, &i)) = self.trie.get_lpm(&Ipv4Net::from(dst)) else {
            return RouteDecision {
                verdict: RouteVerdict::NoRoute,
                route: None,
                table: &self.id,
            };
        };
        let route = &self.routes[i];
        let verdict = match (&route.state, &route.target) {
            (RouteState::Blackhole, _) => RouteVerdict::Blackhole,
            (_, Target::Local) => RouteVerdict::Local,
            (_, Target::NetworkInterface(e)) => RouteVerdict::NetworkInterface(e),
            (_, Target::VpcPeeringConnection(p)) => RouteVerdict::Peering(p),
            (_, Target::InternetGateway(g)) => RouteVerdict::NotYetOnWire(Gateway::Internet, g),
            (_, Target::NatGateway(g)) => RouteVerdict::NotYetOnWire(Gateway::Nat, g),
        };
        RouteDecision {
            verdict,
            route: Some(route),
            table: &self.id,
        }
    }
}

/// A VPC's route tables and which subnet uses which.
#[derive(Debug, Clone, Default)]
pub struct VpcRoutes {
    tables: Vec<RouteTable>,
    main: Option<usize>,
    by_subnet: HashMap<String, usize>,
}

impl VpcRoutes {
    /// The VPC's tables; `main` is the main table's id, `associations` (subnet id, table id) the
    /// explicit associations. Associations naming an unknown table are ignored (the subnet then
    /// uses the main table).
    pub fn new<'a>(
        tables: Vec<RouteTable>,
        main: &str,
        associations: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> VpcRoutes {
        let idx = |id: &str| tables.iter().position(|t| t.id == id);
        let main = idx(main);
        let by_subnet = associations
            .into_iter()
            .filter_map(|(s, t)| Some((s.to_string(), idx(t)?)))
            .collect();
        VpcRoutes {
            tables,
            main,
            by_subnet,
        }
    }

    /// The table a subnet uses: its explicit association, else the main table.
    pub fn table_for(&self, subnet: &str) -> Option<&RouteTable> {
        let i = self.by_subnet.get(subnet).copied().or(self.main)?;
        self.tables.get(i)
    }

    /// Looks `dst` up in the table of `subnet` (the sender's subnet). `None` when the VPC has no
    /// table for it (no main table given).
    pub fn lookup(&self, subnet: &str, dst: Ipv4Addr) -> Option<RouteDecision<'_>> {
        Some(self.table_for(subnet)?.lookup(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn route(dst: &str, target: Target) -> Route {
        Route {
            destination: net(dst),
            target,
            state: RouteState::Active,
        }
    }

    #[test]
    fn longest_prefix_and_every_target() {
        let t = RouteTable::compile(
            "rtb-1",
            &[net("10.0.0.0/16"), net("10.1.0.0/16")],
            [
                route("0.0.0.0/0", Target::InternetGateway("igw-1".into())),
                route("172.16.0.0/12", Target::NatGateway("nat-1".into())),
                route(
                    "192.168.0.0/16",
                    Target::VpcPeeringConnection("pcx-1".into()),
                ),
                route("192.168.5.0/24", Target::NetworkInterface("eni-fw".into())),
                Route {
                    destination: net("192.168.6.0/24"),
                    target: Target::NetworkInterface("eni-gone".into()),
                    state: RouteState::Blackhole,
                },
                // More specific than local: a whole subnet through a middlebox.
                route("10.0.2.0/24", Target::NetworkInterface("eni-fw".into())),
            ],
            Generation(1),
        );
        let v = |d: &str| t.lookup(ip(d)).verdict;
        assert_eq!(v("10.0.0.9"), RouteVerdict::Local);
        assert_eq!(v("10.1.200.1"), RouteVerdict::Local);
        assert_eq!(v("10.0.2.7"), RouteVerdict::NetworkInterface("eni-fw"));
        assert_eq!(v("192.168.1.1"), RouteVerdict::Peering("pcx-1"));
        assert_eq!(v("192.168.5.1"), RouteVerdict::NetworkInterface("eni-fw"));
        assert_eq!(v("192.168.6.1"), RouteVerdict::Blackhole);
        assert_eq!(
            v("172.20.0.1"),
            RouteVerdict::NotYetOnWire(Gateway::Nat, "nat-1")
        );
        assert_eq!(
            v("8.8.8.8"),
            RouteVerdict::NotYetOnWire(Gateway::Internet, "igw-1")
        );
        let d = t.lookup(ip("192.168.5.1"));
        assert_eq!(
            (d.table, d.route.unwrap().destination),
            ("rtb-1", net("192.168.5.0/24"))
        );

        // Without a default route: no route.
        let bare = RouteTable::compile("rtb-2", &[net("10.0.0.0/16")], [], Generation(1));
        assert_eq!(bare.lookup(ip("8.8.8.8")).verdict, RouteVerdict::NoRoute);
        assert!(bare.lookup(ip("8.8.8.8")).route.is_none());
    }

    #[test]
    fn the_local_route_can_be_replaced() {
        let t = RouteTable::compile(
            "rtb-1",
            &[net("10.0.0.0/16")],
            [route(
                "10.0.0.0/16",
                Target::NetworkInterface("eni-gwlb".into()),
            )],
            Generation(1),
        );
        assert_eq!(
            t.lookup(ip("10.0.3.3")).verdict,
            RouteVerdict::NetworkInterface("eni-gwlb")
        );
        assert_eq!(t.routes().len(), 1);
    }

    #[test]
    fn subnets_use_their_association_else_main() {
        let cidrs = [net("10.0.0.0/16")];
        let main = RouteTable::compile("rtb-main", &cidrs, [], Generation(1));
        let public = RouteTable::compile(
            "rtb-pub",
            &cidrs,
            [route("0.0.0.0/0", Target::InternetGateway("igw-1".into()))],
            Generation(1),
        );
        let vpc = VpcRoutes::new(
            vec![main, public],
            "rtb-main",
            [("subnet-pub", "rtb-pub"), ("subnet-x", "rtb-none")],
        );
        let d = vpc.lookup("subnet-pub", ip("8.8.8.8")).unwrap();
        assert_eq!(
            (d.table, d.verdict),
            (
                "rtb-pub",
                RouteVerdict::NotYetOnWire(Gateway::Internet, "igw-1")
            )
        );
        let d = vpc.lookup("subnet-priv", ip("8.8.8.8")).unwrap();
        assert_eq!((d.table, d.verdict), ("rtb-main", RouteVerdict::NoRoute));
        assert_eq!(vpc.table_for("subnet-x").unwrap().id(), "rtb-main");
        assert!(VpcRoutes::default()
            .lookup("subnet-pub", ip("10.0.0.1"))
            .is_none());
    }

    proptest! {
        /// The lookup finds the most specific route containing the destination (checked against
        /// every route in turn).
        #[test]
        fn longest_prefix_match(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u8..3), 0..30),
            dsts in proptest::collection::vec(any::<u32>(), 1..30),
        ) {
            // Addresses drawn from a small space so routes overlap.
            let shrink = |a: u32| Ipv4Addr::from(a & 0x0a0f_00ff);
            let routes: Vec<Route> = routes
                .into_iter()
                .map(|(a, len, k)| Route {
                    destination: Ipv4Net::new(shrink(a), len).unwrap().trunc(),
                    target: match k { 0 => Target::NetworkInterface(format!("eni-{a}")), 1 => Target::VpcPeeringConnection(format!("pcx-{a}")), _ => Target::NatGateway(format!("nat-{a}")) },
                    state: if k == 2 { RouteState::Blackhole } else { RouteState::Active },
                })
                .collect();
            let cidrs = [net("10.0.0.0/16")];
            let t = RouteTable::compile("rtb-p", &cidrs, routes.clone(), Generation(0));
            for d in dsts {
                let d = shrink(d);
                let best = routes
                    .iter()
                    .chain(std::iter::once(&Route { destination: cidrs[0], target: Target::Local, state: RouteState::Active }))
                    .filter(|r| r.destination.contains(&d))
                    .map(|r| r.destination.prefix_len())
                    .max();
                let got = t.lookup(d);
                prop_assert_eq!(got.route.map(|r| r.destination.prefix_len()), best);
                if let Some(r) = got.route {
                    prop_assert!(r.destination.contains(&d));
                    // The first given of a destination wins.
                    let first = routes.iter().find(|x| x.destination == r.destination);
                    if let Some(first) = first {
                        prop_assert_eq!(first, r);
                    }
                }
            }
        }
    }
}
