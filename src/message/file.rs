//! The embedded default e-mail transport: each e-mail becomes
//! `<outbox>/<herald id>.eml`, the RFC 5322 bytes SMTP would send (built by
//! [`build_message`], the one builder).
//!
//! Owns: the outbox directory's `.eml` files. A file is written to a
//! temporary name, synced and renamed, so a crash leaves either the whole
//! file or none; sending the same id again replaces the same file.
//!
//! Must not: write outside its directory (file names are herald's ids, never
//! a caller's string); send SMS; retry by itself. The envelope (Bcc
//! recipients, Return-Path) is not in the file, as it is not in the headers
//! SMTP sends.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::email_message::build_message;
use super::smtp::not_email;
use super::transport::{Email, Outbound, PeerReply, SendResult, Transport};

/// E-mail written as `.eml` files.
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    /// Writes into `dir` (`data/outbox/` in the default config); the
    /// directory is created on the first send.
    pub fn new(dir: PathBuf) -> FileTransport {
        FileTransport { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the e-mail with herald id `id` is written.
    pub fn path_for(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    async fn write(&self, id: Uuid, bytes: &[u8]) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let path = self.path_for(id);
        // A name per write: two sends of one id never share a temp file.
        let tmp = self
            .dir
            .join(format!(".{id}.{}.tmp", Uuid::new_v4().simple()));
        let written = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(bytes).await?;
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = tokio::fs::File::open(&self.dir).await {
            let _ = d.sync_all().await;
        }
        Ok(path)
    }

    async fn send_email(&self, email: &Email) -> SendResult {
        let message = match build_message(email) {
            Ok(m) => m,
            Err(e) => {
                return SendResult::Failed {
                    reply: PeerReply {
                        code: Some("local".into()),
                        text: Some(e.to_string()),
                    },
                }
            }
        };
        match self.write(email.id, &message.formatted()).await {
            Ok(path) => SendResult::Accepted {
                provider_id: None,
                reply: PeerReply {
                    code: Some("file".into()),
                    text: Some(path.display().to_string()),
                },
            },
            // A full disk or a permission may be fixed: try again later.
            Err(e) => SendResult::Retry {
                reply: PeerReply {
                    code: Some("file".into()),
                    text: Some(format!("cannot write into {}: {e}", self.dir.display())),
                },
                after: None,
            },
        }
    }
}

#[async_trait::async_trait]
impl Transport for FileTransport {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn send(&self, message: &Outbound) -> SendResult {
        match message {
            Outbound::Email(email) => self.send_email(email).await,
            Outbound::Sms(_) | Outbound::Whatsapp(_) | Outbound::Slack(_) => not_email("file"),
        }
    }
}
