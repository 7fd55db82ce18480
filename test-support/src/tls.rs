//! A certificate authority and a server certificate for 127.0.0.1, made with `openssl`.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `ca.crt`, `server.crt` and `server.key` into `dir` (the server's certificate names
/// 127.0.0.1 and `localhost` and is signed by the authority); returns the authority's PEM.
pub(crate) fn make_certificates(dir: &Path) -> io::Result<Vec<u8>> {
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")?;
    let steps: [&[&str]; 3] = [
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr"],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for (i, args) in steps.iter().enumerate() {
        let mut cmd = Command::new("openssl");
        cmd.args(*args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if i < 2 {
            cmd.args(["-subj", if i == 0 { "/CN=dual-mode test CA" } else { "/CN=127.0.0.1" }]);
        }
        let status = cmd.status()?;
        if !status.success() {
            return Err(io::Error::other(format!("openssl {} failed ({status})", args[0])));
        }
    }
    std::fs::read(dir.join("ca.crt"))
}
