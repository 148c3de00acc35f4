//! The lab's "internet": hosts of 203.0.113.0/24 that belong to no VPC, in the namespace
//! `${P}internet`, with two servers softvpc runs itself (no python, no inetd), so tests and
//! users have something on the other side of the gateways:
//!
//! - HTTP on the topology's `http` address: `GET /` answers the client's address as the server
//!   saw it (`203.0.113.11\n`, as checkip.amazonaws.com does), `GET /addr` with its port too
//!   (`203.0.113.11:40312\n`: what a NAT translated to);
//! - UDP echo (RFC 862) on `udp_echo`: every datagram goes back to its sender unchanged;
//! - a resolver on `dns` (UDP) that knows the topology's `dns_names` (A records) and answers
//!   NXDOMAIN for every other name: the upstream of the lab's agents, which forward to it what
//!   their VPC routers do not answer (the agents reach it from a socket they open in this
//!   namespace, as a host reaches its resolver over its own network, never through a VPC).
//!   The wire format is hickory-proto's, as the router's.
//!
//! `lab up` starts them as the hidden subcommand `softvpc lab internet-serve --netns NS ...`
//! (a process of its own, recorded by pid in the state file and stopped by `lab down`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

/// Largest UDP payload echoed (an IPv4 datagram's maximum).
const MAX_DATAGRAM: usize = 65_535;

/// What `internet-serve` serves.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The namespace to serve in (the lab's `${P}internet`).
    #[arg(long)]
    pub netns: String,
    /// Address and port of the HTTP server.
    #[arg(long)]
    pub http: Option<SocketAddrV4>,
    /// Address and port of the UDP echo server.
    #[arg(long)]
    pub udp_echo: Option<SocketAddrV4>,
    /// Address and port of the resolver (UDP).
    #[arg(long)]
    pub dns: Option<SocketAddrV4>,
    /// A name the resolver knows, `NAME=IPV4` (repeated).
    #[arg(long = "dns-name", value_parser = parse_dns_name, requires = "dns")]
    pub dns_names: Vec<(String, Ipv4Addr)>,
}

fn parse_dns_name(text: &str) -> Result<(String, Ipv4Addr), String> {
    let (name, ip) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=IPV4"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    Ok((name.trim_end_matches('.').to_ascii_lowercase(), ip))
}

/// The command line that runs the servers (after the binary).
pub fn serve_command(netns: &str, net: &crate::topology::Internet) -> Vec<String> {
    let (http, udp_echo) = (net.http, net.udp_echo);
    let mut args = vec![
        "lab".to_string(),
        crate::names::INTERNET_SERVE.to_string(),
        "--netns".to_string(),
        netns.to_string(),
    ];
    if let Some(a) = http {
        args.extend(["--http".to_string(), a.to_string()]);
    }
    if let Some(a) = udp_echo {
        args.extend(["--udp-echo".to_string(), a.to_string()]);
    }
    if let Some(a) = net.dns {
        args.extend(["--dns".to_string(), a.to_string()]);
        for (name, ip) in &net.dns_names {
            args.extend(["--dns-name".to_string(), format!("{name}={ip}")]);
        }
    }
    args
}

/// TTL of the resolver's answers.
const DNS_TTL: u32 = 60;

/// The resolver's answer to `query`: A records of `names` (lowercase, without the root's dot),
/// NXDOMAIN for any other name, no answer for another type of a known name; FORMERR for what
/// does not decode as one question, NOTIMP for other opcodes. `None` (dropped) for a response
/// or a runt.
pub fn resolve(query: &[u8], names: &BTreeMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let reply = |op, rd, code| {
        let mut m = Message::error_msg(id, op, code);
        m.metadata.recursion_desired = rd;
        m.metadata.recursion_available = true;
        m
    };
    let Ok(m) = Message::from_vec(query) else {
        return reply(OpCode::Query, false, ResponseCode::FormErr)
            .to_vec()
            .ok();
    };
    let (op, rd) = (m.metadata.op_code, m.metadata.recursion_desired);
    if op != OpCode::Query {
        return reply(op, rd, ResponseCode::NotImp).to_vec().ok();
    }
    let [q] = &m.queries[..] else {
        return reply(op, rd, ResponseCode::FormErr).to_vec().ok();
    };
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut answer = reply(op, rd, ResponseCode::NoError);
    answer.add_query(q.clone());
    match names.get(&name) {
        None => answer.metadata.response_code = ResponseCode::NXDomain,
        Some(&ip) if q.query_type() == RecordType::A && q.query_class() == DNSClass::IN => {
            answer.add_answer(Record::from_rdata(
                q.name().clone(),
                DNS_TTL,
                RData::A(A(ip)),
            ));
        }
        Some(_) => {}
    }
    answer.to_vec().ok()
}

/// The HTTP body for a client: its address, or with `with_port` its address and port.
pub fn client_body(client: SocketAddr, with_port: bool) -> String {
    if with_port {
        format!("{client}\n")
    } else {
        format!("{}\n", client.ip())
    }
}

/// `softvpc lab internet-serve`: binds both sockets inside the namespace, then serves until
/// killed.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let (http, udp_echo, dns) = (args.http, args.udp_echo, args.dns);
    if http.is_none() && udp_echo.is_none() && dns.is_none() {
        anyhow::bail!("nothing to serve: give --http, --udp-echo and/or --dns");
    }
    let names: BTreeMap<String, Ipv4Addr> = args.dns_names.iter().cloned().collect();
    // The sockets are opened by a thread inside the namespace and stay there; the runtime's
    // own threads never need to enter it.
    let (tcp, udp, dns_sock) = softvpc_netlink::netns::run_in(&args.netns, move || {
        let tcp = http
            .map(|a| {
                let l = std::net::TcpListener::bind(a)
                    .with_context(|| format!("listening on {a} (tcp)"))?;
                l.set_nonblocking(true)?;
                anyhow::Ok(l)
            })
            .transpose()?;
        let udp = udp_echo
            .map(|a| {
                let s =
                    std::net::UdpSocket::bind(a).with_context(|| format!("binding {a} (udp)"))?;
                s.set_nonblocking(true)?;
                anyhow::Ok(s)
            })
            .transpose()?;
        let dns = dns
            .map(|a| {
                let s =
                    std::net::UdpSocket::bind(a).with_context(|| format!("binding {a} (dns)"))?;
                s.set_nonblocking(true)?;
                anyhow::Ok(s)
            })
            .transpose()?;
        anyhow::Ok((tcp, udp, dns))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(tcp) = tcp {
            let listener = tokio::net::TcpListener::from_std(tcp)?;
            let app =
                axum::Router::new()
                    .route(
                        "/",
                        get(|ConnectInfo(c): ConnectInfo<SocketAddr>| async move {
                            client_body(c, false)
                        }),
                    )
                    .route(
                        "/addr",
                        get(|ConnectInfo(c): ConnectInfo<SocketAddr>| async move {
                            client_body(c, true)
                        }),
                    );
            tasks.spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await
                .context("the HTTP server stopped")
            });
        }
        if let Some(udp) = udp {
            let sock = tokio::net::UdpSocket::from_std(udp)?;
            tasks.spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    let (n, from) = sock.recv_from(&mut buf).await.context("udp echo")?;
                    // A send error (the sender's unreachable) is that datagram's problem only.
                    if let Err(e) = sock.send_to(&buf[..n], from).await {
                        tracing::debug!("udp echo to {from}: {e}");
                    }
                }
            });
        }
        if let Some(sock) = dns_sock {
            let sock = tokio::net::UdpSocket::from_std(sock)?;
            tasks.spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    let (n, from) = sock.recv_from(&mut buf).await.context("dns")?;
                    let Some(answer) = resolve(&buf[..n], &names) else {
                        continue;
                    };
                    if let Err(e) = sock.send_to(&answer, from).await {
                        tracing::debug!("dns answer to {from}: {e}");
                    }
                }
            });
        }
        tracing::info!(?http, ?udp_echo, ?dns, netns = %args.netns, "the lab's internet serves");
        match tasks.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(anyhow::anyhow!("a server task failed: {e}")),
            None => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_say_what_the_server_saw() {
        let c: SocketAddr = "203.0.113.11:40312".parse().unwrap();
        assert_eq!(client_body(c, false), "203.0.113.11\n");
        assert_eq!(client_body(c, true), "203.0.113.11:40312\n");
    }

    #[test]
    fn the_command_line_is_recognised_as_the_labs() {
        let mut argv = vec!["/usr/bin/softvpc".to_string()];
        let net = crate::topology::Topology::seed().internet.unwrap();
        argv.extend(serve_command("p-internet", &net));
        assert!(crate::names::cmdline_belongs_to_lab(&argv, "p-"));
        assert!(!crate::names::cmdline_belongs_to_lab(&argv, "q-"));
        assert!(argv.contains(&"--dns-name".to_string()));
        assert!(argv.contains(&"www.example.test=203.0.113.10".to_string()));
        // What clap reads back is what the topology said.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ServeArgs,
        }
        use clap::Parser;
        let cli = Cli::try_parse_from(
            std::iter::once("serve".to_string()).chain(argv[3..].iter().cloned()),
        )
        .unwrap();
        assert_eq!(cli.args.dns, net.dns);
        assert_eq!(
            cli.args.dns_names.into_iter().collect::<BTreeMap<_, _>>(),
            net.dns_names
        );
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x5eed, hickory_proto::op::MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            ty,
        ));
        m.to_vec().unwrap()
    }

    proptest::proptest! {
        /// Whatever arrives (the resolver listens on the lab's internet), it never panics, and
        /// what it answers is a response with the query's id.
        #[test]
        fn any_datagram_is_answered_well_or_dropped(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let names = BTreeMap::from([("a.test".to_string(), Ipv4Addr::new(203, 0, 113, 10))]);
            if let Some(answer) = resolve(&bytes, &names) {
                proptest::prop_assert!(answer.len() >= 12);
                proptest::prop_assert_eq!(&answer[..2], &bytes[..2]);
                proptest::prop_assert!(answer[2] & 0x80 != 0, "a response");
            }
        }
    }

    #[test]
    fn the_resolver_knows_its_names_and_nothing_else() {
        let names = BTreeMap::from([(
            "www.example.test".to_string(),
            Ipv4Addr::new(203, 0, 113, 10),
        )]);
        let a = Message::from_vec(
            &resolve(&query("WWW.example.test.", RecordType::A), &names).unwrap(),
        )
        .unwrap();
        assert_eq!(a.metadata.id, 0x5eed);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(
            a.answers[0].data,
            RData::A(A(Ipv4Addr::new(203, 0, 113, 10)))
        );
        let aaaa = Message::from_vec(
            &resolve(&query("www.example.test", RecordType::AAAA), &names).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (aaaa.metadata.response_code, aaaa.answers.len()),
            (ResponseCode::NoError, 0)
        );
        let nx = Message::from_vec(
            &resolve(&query("nowhere.example.test", RecordType::A), &names).unwrap(),
        )
        .unwrap();
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        // Garbage after a query header: FORMERR with its id; runts and responses: nothing.
        let mut bad = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bad.extend([0x3f; 20]);
        let f = resolve(&bad, &names).unwrap();
        assert_eq!((&f[..2], f[3] & 0x0f), (&[0xab, 0xcd][..], 1));
        assert_eq!(resolve(&[1, 2, 3], &names), None);
        let mut response = query("www.example.test", RecordType::A);
        response[2] |= 0x80;
        assert_eq!(resolve(&response, &names), None);
    }
}
