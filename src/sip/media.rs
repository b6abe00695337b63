//! The media side of a call as call control sees it: an RTP socket bound
//! before the offer is built, started once the answer says where to send.
//!
//! Owns: turning the SDP answer into a running media session. Must not:
//! packetise audio itself (that is `crate::media`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::config::MediaConfig;

use super::sdp::{AudioCodec, SdpAnswer};

/// Binds media sockets for new calls.
pub(super) struct MediaFactory {
    ip: IpAddr,
}

impl MediaFactory {
    pub(super) fn new(_cfg: &MediaConfig, ip: IpAddr) -> MediaFactory {
        MediaFactory { ip }
    }

    /// Binds the call's RTP socket (before the offer is built).
    pub(super) async fn prepare(&self) -> std::io::Result<PreparedMedia> {
        let socket = UdpSocket::bind(SocketAddr::new(self.ip, 0)).await?;
        Ok(PreparedMedia {
            local: socket.local_addr()?,
            socket: Arc::new(socket),
        })
    }
}

/// A bound, not yet started, media socket.
pub(super) struct PreparedMedia {
    pub(super) local: SocketAddr,
    socket: Arc<UdpSocket>,
}

impl PreparedMedia {
    pub(super) fn start(&self, answer: &SdpAnswer) -> CallMedia {
        CallMedia {
            local: self.local,
            remote: answer.remote,
            codec: answer.codec,
            telephone_event_pt: answer.telephone_event_pt,
            _socket: self.socket.clone(),
        }
    }
}

/// The negotiated media of an answered call.
#[derive(Debug)]
pub struct CallMedia {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub codec: AudioCodec,
    pub telephone_event_pt: Option<u8>,
    _socket: Arc<UdpSocket>,
}

/// Media counters of a finished call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaStats {}
