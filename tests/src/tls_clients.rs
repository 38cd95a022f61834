//! Many TLS connections at once from one namespace, each sending one OPTIONS once all are open:
//! the "1,000 phones on TLS" test. A rustls client on one tokio thread, because no SIP client in
//! Debian holds a thousand connections (sipsak makes one and exits).

use std::{net::SocketAddr, os::unix::process::CommandExt, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Netns;

/// What became of the connections.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub connected: usize,
    pub answered_200: usize,
}

/// Opens `count` TLS connections from `ns` to `edge` (its certificate chaining to `ca`), waits
/// until all are up, then sends an OPTIONS on each and reads its answer (10 s at most each).
pub fn options_on_many(
    ns: &Netns,
    edge: SocketAddr,
    ca: &Path,
    count: usize,
) -> anyhow::Result<Report> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    ns.inside(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(run(connector, edge, count))
    })
}

async fn run(
    connector: tokio_rustls::TlsConnector,
    edge: SocketAddr,
    count: usize,
) -> anyhow::Result<Report> {
    let name = ServerName::IpAddress(edge.ip().into());
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(edge).await?;
            connector.connect(name.clone(), tcp).await
        };
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(10), connect).await {
            streams.push(s);
        }
    }
    let mut report = Report {
        connected: streams.len(),
        ..Report::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        tasks.spawn(async move {
            let options = format!(
                "OPTIONS sip:bob@{ip}:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.2:5061;branch=z9hG4bKmany{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:phone{i}@192.0.2.2>;tag=m{i}\r\nTo: <sip:bob@{ip}>\r\n\
                 Call-ID: many-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                ip = edge.ip()
            );
            let answer = async {
                s.write_all(options.as_bytes()).await?;
                let mut got = Vec::new();
                let mut buf = [0u8; 2048];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                anyhow::Ok(got)
            };
            let got = tokio::time::timeout(Duration::from_secs(10), answer).await;
            // Every connection was open before the first OPTIONS; each closes with its task.
            matches!(got, Ok(Ok(g)) if g.starts_with(b"SIP/2.0 200"))
        });
    }
    while let Some(r) = tasks.join_next().await {
        if r.unwrap_or(false) {
            report.answered_200 += 1;
        }
    }
    Ok(report)
}

/// socat (OpenSSL) in a namespace: takes plain TCP connections on `listen` and carries each over
/// its own TLS connection to `to`, verifying `to`'s certificate against `ca`. With sipp over TCP
/// in front it is a TLS SIP load generator (Debian's sipp has no TLS). Stopped on drop.
pub struct TlsRelay {
    child: Option<std::process::Child>,
}

impl TlsRelay {
    pub fn start(
        ns: &Netns,
        listen: SocketAddr,
        to: SocketAddr,
        ca: &Path,
    ) -> anyhow::Result<Self> {
        let child = ns
            .command("socat")
            .arg(format!(
                "TCP-LISTEN:{},bind={},reuseaddr,fork,nodelay",
                listen.port(),
                listen.ip()
            ))
            .arg(format!(
                "OPENSSL:{to},cafile={},verify=1,nodelay",
                ca.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting socat (install it: cargo xtask setup)")?;
        let relay = TlsRelay { child: Some(child) };
        // Listening within 2 s.
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            if ns.tcp_connect(listen).is_ok() {
                return Ok(relay);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("socat did not listen on {listen}")
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The group: socat forks a child per connection.
            // SAFETY: signalling a process group we created.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}
