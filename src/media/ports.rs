//! The RTP port pool.
//!
//! Owns: handing out even UDP ports from a configured range `[min, max)` (RTP
//! takes the even port, RTCP would take the next odd one), skipping ports the
//! operating system refuses because something else holds them, and taking
//! ports back when a [`PortLease`] is dropped. Freed ports go to the back of
//! the queue so a port is not reused while stray packets of its last call may
//! still arrive.
//!
//! Must not: know about RTP or calls; hold a port past its lease.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

/// A thread-safe pool of even UDP ports. Share it as `Arc<PortPool>`.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    free: Mutex<VecDeque<u16>>,
}

/// One port taken from a [`PortPool`]; the port returns to the pool on drop.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortPool {
    /// A pool over the even ports of `[min, max)`. `min` is rounded up to
    /// the next even number; port 0 is never handed out. An empty range gives
    /// an empty pool (every bind then fails with `AddrNotAvailable`).
    pub fn new(min: u16, max: u16) -> Arc<PortPool> {
        Arc::new(PortPool {
            min,
            max,
            free: Mutex::new(even_ports(min, max).collect()),
        })
    }

    /// The configured range `[min, max)`.
    pub fn range(&self) -> (u16, u16) {
        (self.min, self.max)
    }

    /// How many ports are free right now.
    pub fn available(&self) -> usize {
        self.lock().len()
    }

    /// Takes a port without binding it (the caller binds and must cope with
    /// it being in use). `None` when the pool is exhausted.
    pub fn lease(self: &Arc<Self>) -> Option<PortLease> {
        let port = self.lock().pop_front()?;
        Some(PortLease {
            pool: Arc::clone(self),
            port,
        })
    }

    /// Takes a port and binds a non-blocking UDP socket on `ip` with it.
    /// Ports that fail to bind because they are in use (or reserved) are
    /// skipped and stay in the pool; any other bind error is returned at once.
    pub fn bind_udp(self: &Arc<Self>, ip: IpAddr) -> io::Result<(PortLease, UdpSocket)> {
        let candidates = self.available();
        for _ in 0..candidates {
            let Some(lease) = self.lease() else { break };
            match UdpSocket::bind(SocketAddr::new(ip, lease.port)) {
                Ok(sock) => {
                    sock.set_nonblocking(true)?;
                    return Ok((lease, sock));
                }
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        || e.kind() == io::ErrorKind::PermissionDenied =>
                {
                    // Dropping the lease puts the port at the back of the queue.
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "no free RTP port in [{}, {}) on {ip} ({} free in the pool, all in use elsewhere)",
                self.min,
                self.max,
                self.available()
            ),
        ))
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<u16>> {
        // The queue is always left consistent, so a poisoned lock is usable.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, port: u16) {
        self.lock().push_back(port);
    }
}

impl PortLease {
    /// The leased port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.give_back(self.port);
    }
}

/// The even ports of `[min, max)`, without 0.
fn even_ports(min: u16, max: u16) -> impl Iterator<Item = u16> {
    let start = min.saturating_add(min & 1).max(2);
    (start..max).step_by(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn only_even_ports_inside_the_range_are_handed_out() {
        assert_eq!(
            even_ports(10001, 10010).collect::<Vec<_>>(),
            [10002, 10004, 10006, 10008]
        );
        assert_eq!(even_ports(10000, 10001).collect::<Vec<_>>(), [10000]);
        assert_eq!(even_ports(0, 5).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(even_ports(10, 10).count(), 0);
        assert_eq!(even_ports(20, 10).count(), 0);
        assert_eq!(even_ports(65534, 65535).collect::<Vec<_>>(), [65534]);
    }

    #[test]
    fn dropping_a_lease_returns_its_port_to_the_back() {
        let pool = PortPool::new(40000, 40006);
        assert_eq!(pool.available(), 3);
        let a = pool.lease().expect("a port");
        let b = pool.lease().expect("a port");
        assert_eq!((a.port(), b.port()), (40000, 40002));
        assert_eq!(pool.available(), 1);
        drop(a);
        assert_eq!(pool.available(), 2);
        let c = pool.lease().expect("a port");
        assert_eq!(c.port(), 40004, "the freed port waits behind the others");
        let d = pool.lease().expect("a port");
        assert_eq!(d.port(), 40000);
        assert!(pool.lease().is_none(), "exhausted");
    }

    #[test]
    fn ports_in_use_elsewhere_are_skipped() {
        // Find an even port that is free now, hold it, and build a pool
        // whose first candidate is that port.
        let (held, port) = loop {
            let s = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
            let p = s.local_addr().expect("addr").port();
            if p.is_multiple_of(2) && p < 65534 {
                break (s, p);
            }
        };
        let pool = PortPool::new(port, port + 4);
        let (lease, sock) = match pool.bind_udp(LOCALHOST) {
            Ok(x) => x,
            // port+2 may be taken by someone else as well; then nothing is free.
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
                return;
            }
        };
        assert_eq!(lease.port(), port + 2);
        assert_eq!(sock.local_addr().expect("addr").port(), port + 2);
        assert_eq!(pool.available(), 1, "the busy port stays in the pool");
        drop(held);
    }

    #[test]
    fn an_exhausted_pool_reports_a_clear_error() {
        let pool = PortPool::new(7, 7);
        let err = pool.bind_udp(LOCALHOST).expect_err("empty pool");
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(err.to_string().contains("[7, 7)"), "{err}");
    }

    #[test]
    fn the_pool_is_shared_across_threads() {
        let pool = PortPool::new(41000, 41200);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    (0..25)
                        .filter_map(|_| pool.lease())
                        .map(|l| {
                            let p = l.port();
                            std::mem::forget(l);
                            p
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u16> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 100, "every lease got a distinct port");
        assert_eq!(pool.available(), 0);
    }
}
