//! Certificates made at test time with Debian's `openssl` command: a CA, the edge's server
//! certificate (for 192.0.2.1, by IP address), a backend's (`backend.test`), two client
//! certificates the CA signed (`trunk.test`, `other.test`), and a client certificate from
//! another CA (unknown to the edge).
//! Removed on drop.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The edge's names in its certificate.
const SERVER_SAN: &str = "subjectAltName=IP:192.0.2.1,DNS:edge.test";

pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sfp-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let certs = Certs { dir };
        certs.ca("ca")?;
        certs.ca("other-ca")?;
        // (file name, common name, signing CA, subject alternative names)
        let leaves = [
            ("server", "server", "ca", SERVER_SAN),
            ("client", "client", "ca", "subjectAltName=DNS:trunk.test"),
            (
                "other-client",
                "other",
                "ca",
                "subjectAltName=DNS:other.test",
            ),
            (
                "stranger",
                "stranger",
                "other-ca",
                "subjectAltName=DNS:stranger.test",
            ),
            (
                "backend",
                "backend",
                "ca",
                "subjectAltName=DNS:backend.test",
            ),
        ];
        for (name, cn, ca, san) in leaves {
            certs.leaf(name, cn, ca, san)?;
        }
        Ok(certs)
    }

    /// A new server certificate and key, with common name `cn`, in place of the old files (a
    /// renewal, for the reload test).
    pub fn renew_server(&self, cn: &str) -> anyhow::Result<()> {
        self.leaf("server", cn, "ca", SERVER_SAN)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn openssl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .context("running openssl (Debian package openssl)")?;
        if !out.status.success() {
            bail!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A new P-256 key in `<name>.key` and, with `then`, a self-signed CA certificate or a
    /// certificate request in `<name>.pem` / `<name>.csr`.
    fn new_key(&self, name: &str, then: &[&str]) -> anyhow::Result<()> {
        let key = format!("{name}.key");
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
        ];
        args.extend_from_slice(then);
        self.openssl(&args)
    }

    fn ca(&self, name: &str) -> anyhow::Result<()> {
        let (out, subject) = (
            format!("{name}.pem"),
            format!("/CN=sip-fastpath test {name}"),
        );
        self.new_key(
            name,
            &[
                "-x509",
                "-out",
                &out,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )
    }

    fn leaf(&self, name: &str, cn: &str, ca: &str, san: &str) -> anyhow::Result<()> {
        let (csr, subject) = (format!("{name}.csr"), format!("/CN={cn}"));
        self.new_key(name, &["-out", &csr, "-subj", &subject])?;
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!("{san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"),
        )?;
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ])
    }

    /// The `[tls]` table for the edge: its certificate, and `client_ca` for mutual TLS.
    pub fn tls_section(&self, mutual: bool) -> String {
        let p = |f: &str| self.path(f).display().to_string();
        let mut s = format!(
            "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            p("server.pem"),
            p("server.key")
        );
        if mutual {
            s += &format!("client_ca = \"{}\"\n", p("ca.pem"));
        }
        s
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
