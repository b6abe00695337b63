//! A packet capture on loopback (an AF_PACKET socket, as tcpdump uses): the
//! RTP payloads sent to given UDP ports, to assert on audio bytes that pass
//! between two peers that are not the test itself. Needs CAP_NET_RAW (root).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// RTP payloads by (source port, destination port), in arrival order:
/// (payload type, payload).
pub type Payloads = HashMap<(u16, u16), Vec<(u8, Vec<u8>)>>;

pub struct Capture {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Payloads>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing RTP on the loopback interface.
    pub fn start() -> Capture {
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        assert!(
            fd >= 0,
            "cannot open a packet socket ({}); capturing RTP needs CAP_NET_RAW (run the tests as root)",
            std::io::Error::last_os_error()
        );
        // Only the loopback interface, and wake up every 50 ms to check for stop.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = lo as i32;
        let rc = unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "binding the packet socket to lo failed");
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Payloads>> = Arc::default();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = unsafe {
                    libc::recvfrom(
                        fd,
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                        &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                        &mut len,
                    )
                };
                // Loopback shows each datagram twice (out and in): keep the incoming copy.
                if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                if let Some((flow, pt, payload)) = rtp_of(&buf[..n as usize]) {
                    seen2
                        .lock()
                        .unwrap()
                        .entry(flow)
                        .or_default()
                        .push((pt, payload.to_vec()));
                }
            }
            unsafe { libc::close(fd) };
        });
        Capture {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// What was captured so far.
    pub fn payloads(&self) -> Payloads {
        self.seen.lock().unwrap().clone()
    }

    /// Stops and returns everything captured.
    pub fn finish(mut self) -> Payloads {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("capture thread");
        }
        self.payloads()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// ((source port, destination port), payload type, payload) of an
/// Ethernet/IPv4/UDP/RTP frame.
fn rtp_of(frame: &[u8]) -> Option<((u16, u16), u8, &[u8])> {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let udp = ip.get(ihl..)?;
    if udp.len() < 8 {
        return None;
    }
    let src = u16::from_be_bytes([udp[0], udp[1]]);
    let dst = u16::from_be_bytes([udp[2], udp[3]]);
    let rtp = &udp[8..];
    if rtp.len() < 12 || rtp[0] >> 6 != 2 {
        return None;
    }
    let cc = (rtp[0] & 0x0f) as usize;
    let mut off = 12 + cc * 4;
    if rtp[0] & 0x10 != 0 {
        let ext = rtp.get(off..off + 4)?;
        off += 4 + u16::from_be_bytes([ext[2], ext[3]]) as usize * 4;
    }
    Some(((src, dst), rtp[1] & 0x7f, rtp.get(off..)?))
}

/// Whether `haystack` contains `needle` as a contiguous run.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The flows whose μ-law audio (payload type 0) contains `needle`.
pub fn flows_carrying(p: &Payloads, needle: &[u8]) -> Vec<(u16, u16)> {
    let mut flows: Vec<_> = p
        .iter()
        .filter(|(_, pkts)| {
            let audio: Vec<u8> = pkts
                .iter()
                .filter(|(pt, _)| *pt == 0)
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            contains(&audio, needle)
        })
        .map(|(flow, _)| *flow)
        .collect();
    flows.sort();
    flows
}
