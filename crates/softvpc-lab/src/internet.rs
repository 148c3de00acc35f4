//! The lab's "internet": hosts of 203.0.113.0/24 that belong to no VPC, in the namespace
//! `${P}internet`, with two servers softvpc runs itself (no python, no inetd), so tests and
//! users have something on the other side of the gateways:
//!
//! - HTTP on the topology's `http` address: `GET /` answers the client's address as the server
//!   saw it (`203.0.113.11\n`, as checkip.amazonaws.com does), `GET /addr` with its port too
//!   (`203.0.113.11:40312\n`: what a NAT translated to);
//! - UDP echo (RFC 862) on `udp_echo`: every datagram goes back to its sender unchanged.
//!
//! `lab up` starts them as the hidden subcommand `softvpc lab internet-serve --netns NS ...`
//! (a process of its own, recorded by pid in the state file and stopped by `lab down`).

use std::net::{SocketAddr, SocketAddrV4};

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::routing::get;

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
}

/// The command line that runs the servers (after the binary).
pub fn serve_command(
    netns: &str,
    http: Option<SocketAddrV4>,
    udp_echo: Option<SocketAddrV4>,
) -> Vec<String> {
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
    args
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
    let (http, udp_echo) = (args.http, args.udp_echo);
    if http.is_none() && udp_echo.is_none() {
        anyhow::bail!("nothing to serve: give --http and/or --udp-echo");
    }
    // The sockets are opened by a thread inside the namespace and stay there; the runtime's
    // own threads never need to enter it.
    let (tcp, udp) = softvpc_netlink::netns::run_in(&args.netns, move || {
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
        anyhow::Ok((tcp, udp))
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
        tracing::info!(?http, ?udp_echo, netns = %args.netns, "the lab's internet serves");
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
        argv.extend(serve_command(
            "p-internet",
            Some("203.0.113.10:80".parse().unwrap()),
            Some("203.0.113.10:7".parse().unwrap()),
        ));
        assert!(crate::names::cmdline_belongs_to_lab(&argv, "p-"));
        assert!(!crate::names::cmdline_belongs_to_lab(&argv, "q-"));
    }
}
