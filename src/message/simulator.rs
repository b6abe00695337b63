//! The `simulator` SMS transport (the embedded default): takes every SMS at
//! once and later reports its delivery as the simulator's population says
//! (`[sms]`: delivered / failed / no-receipt shares and the report delay),
//! the same answer for the same seed and message order. So `serve` and
//! `demo` send SMS without an SMSC.
//!
//! Must not: be used where a real SMSC is configured.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::transport::{
    DeliveryReport, Outbound, PeerReply, ReportKey, ReportSink, ReportStatus, SendResult, Transport,
};
use crate::sim::population::{SmsPlan, SmsShares};

pub struct SimulatorTransport {
    shares: SmsShares,
    seed: u64,
    sent: AtomicU64,
    reports: ReportSink,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl SimulatorTransport {
    pub fn new(shares: SmsShares, seed: u64, reports: ReportSink) -> Self {
        SimulatorTransport {
            shares,
            seed,
            sent: AtomicU64::new(0),
            reports,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }
}

#[async_trait::async_trait]
impl Transport for SimulatorTransport {
    fn name(&self) -> &'static str {
        "simulator"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        let Outbound::Sms(_) = message else {
            return SendResult::Failed {
                reply: PeerReply {
                    code: None,
                    text: Some("the simulator transport carries SMS only".into()),
                },
            };
        };
        let index = self.sent.fetch_add(1, Ordering::Relaxed);
        let provider_id = format!("sim{index:010}");
        let report = |status, delay, stat: &str| {
            let sink = self.reports.clone();
            let cancel = self.cancel.clone();
            let r = DeliveryReport {
                key: ReportKey::Provider(provider_id.clone()),
                status,
                reply: PeerReply {
                    code: Some(stat.to_string()),
                    text: Some(format!("stat:{stat}")),
                },
                address: None,
            };
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(delay) => { sink.report(r).await; }
                }
            });
        };
        match self.shares.plan(self.seed, index) {
            SmsPlan::Delivered(d) => report(ReportStatus::Delivered, d, "DELIVRD"),
            SmsPlan::Failed(d) => report(ReportStatus::Failed, d, "UNDELIV"),
            SmsPlan::NoReceipt => {}
        }
        SendResult::Accepted {
            provider_id: Some(provider_id),
            reply: PeerReply {
                code: Some("0x00000000".into()),
                text: Some("accepted by the simulator".into()),
            },
        }
    }

    async fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
