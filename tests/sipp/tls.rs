//! SIP over TLS in the tests: a CA and a server certificate made on the spot
//! (rcgen), and socat's OpenSSL terminating TLS in front of a SIPp `-t t1`
//! (Debian's SIPp is built without TLS).

use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::{crate_root, SippUas, UasOptions};

/// A CA, and a server certificate it signed for `names`; PEM files in `dir`:
/// ca.pem, server.pem, server.key.
pub fn make_certs(dir: &Path, names: &[&str]) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "herald test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let server = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// socat terminating TLS on a free port (certificate from `dir`) in front of
/// TCP `to`; returns it and its port once it listens.
pub async fn tls_front(dir: &Path, to: std::net::SocketAddr) -> (Child, u16) {
    super::ensure_debian_tool("socat", "socat");
    for _ in 0..3 {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay,verify=0,cert={},key={}",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ))
            .arg(format!("TCP:{to},nodelay"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("socat (Debian package socat) runs");
        tokio::select! {
            _ = super::wait_listening(port, true) => return (child, port),
            _ = child.wait() => continue,
        }
    }
    panic!("socat did not listen three times");
}

/// SIPp `-t t1` behind a TLS front: the scenario's Contact names the front,
/// `sip:…;transport=tls`, so herald's in-dialog requests take the TLS
/// connection too.
pub async fn sipp_behind_tls(
    dir: &Path,
    scenario: &str,
    more: &[&str],
    calls: Option<u32>,
    timeout_s: u32,
    trace: bool,
) -> (SippUas, Child, u16) {
    // The front's port must be in the scenario before SIPp starts, and SIPp's
    // port in the front: the front forwards to a port found free, SIPp is
    // started on it.
    let sipp_port = super::free_udp_port();
    let (front, tls_port) = tls_front(dir, ([127, 0, 0, 1], sipp_port).into()).await;
    let scenario = std::fs::read_to_string(crate_root().join("scenarios").join(scenario))
        .unwrap()
        .replace(
            "Contact: <sip:[local_ip]:[local_port];transport=[transport]>",
            &format!("Contact: <sip:127.0.0.1:{tls_port};transport=tls>"),
        );
    let path = dir.join("uas_tls.xml");
    std::fs::write(&path, scenario).unwrap();
    let port_arg = sipp_port.to_string();
    let mut extra = vec!["-t", "t1", "-p", port_arg.as_str()];
    extra.extend_from_slice(more);
    let uas = SippUas::start_with(UasOptions {
        scenario: path.to_str().unwrap(),
        calls,
        extra: &extra,
        timeout_s,
        trace,
    })
    .await;
    (uas, front, tls_port)
}
