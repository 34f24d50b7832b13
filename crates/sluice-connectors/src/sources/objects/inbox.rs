//! Where object notifications come from: a durable JetStream consumer or an
//! SQS queue, behind one pull and one settle. A notification is settled
//! (acknowledged, or deleted from SQS) only after what it announced is
//! recorded in the ledger or kept as a dead letter; one that is not comes
//! back, and recording an object twice changes nothing.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;

use super::config::{NotificationConfig, NotificationInbox};
use crate::{
    aws::sqs::{MAX_PER_CALL, SqsQueue},
    sources::{
        SourceContext, SourceError,
        nats::{Durable, durable_consumer, pull, wait_for_consumer},
    },
};

/// How long a pull waits for notifications.
const PULL_WAIT: Duration = Duration::from_secs(1);

/// How long a notification taken (SQS visibility, JetStream ack wait) stays
/// with this source before it is handed out again.
const HOLD_SECS: u32 = 30;

pub(crate) enum Inbox {
    JetStream(Box<Durable>),
    Sqs(SqsQueue),
}

/// One notification as pulled.
pub(crate) struct Notice {
    pub payload: Bytes,
    /// Its place upstream, for a dead letter's key (stream sequence or SQS message id).
    pub id: String,
    handle: Handle,
}

enum Handle {
    JetStream(Box<jetstream::Message>),
    Sqs { receipt: String },
}

impl Inbox {
    /// Connects to the inbox `config` names (the JetStream consumer is
    /// created if missing, waiting while NATS cannot be reached; the stream
    /// or queue must exist); `None` if the pipeline stops first.
    pub async fn open(config: &NotificationConfig, ctx: &SourceContext) -> Result<Option<Inbox>, SourceError> {
        match config.inbox().map_err(SourceError::Upstream)? {
            NotificationInbox::Sqs { queue_url, target } => SqsQueue::connect(&target, queue_url)
                .await
                .map(|queue| Some(Inbox::Sqs(queue)))
                .map_err(|e| SourceError::Upstream(format!("notifications: {e}"))),
            NotificationInbox::JetStream {
                url,
                stream,
                subject,
                consumer,
            } => {
                let name = consumer.map_or_else(|| format!("sluice-{}-notifications", ctx.name), str::to_string);
                let ack_wait = Duration::from_secs(u64::from(HOLD_SECS));
                let consumer =
                    wait_for_consumer(ctx, || durable_consumer(url, stream, subject, &name, ack_wait)).await?;
                Ok(consumer.map(|consumer| Inbox::JetStream(Box::new(consumer))))
            }
        }
    }

    /// The stream's or queue's name.
    pub fn name(&self) -> String {
        match self {
            Inbox::JetStream(durable) => durable.consumer.cached_info().stream_name.clone(),
            Inbox::Sqs(queue) => queue.name().to_string(),
        }
    }

    /// The notifications that arrived within a second (at most a hundred
    /// from JetStream, ten from SQS).
    pub async fn pull(&self) -> Result<Vec<Notice>, String> {
        match self {
            Inbox::JetStream(durable) => Ok(pull(durable, 100, 1024 * 1024, PULL_WAIT)
                .await?
                .into_iter()
                .map(|message| Notice {
                    payload: message.payload.clone(),
                    id: message
                        .info()
                        .map(|i| i.stream_sequence.to_string())
                        .unwrap_or_default(),
                    handle: Handle::JetStream(Box::new(message)),
                })
                .collect()),
            Inbox::Sqs(queue) => Ok(queue
                .receive(MAX_PER_CALL, PULL_WAIT.as_secs() as u32, HOLD_SECS)
                .await?
                .into_iter()
                .map(|m| Notice {
                    payload: Bytes::from(m.body),
                    id: m.id,
                    handle: Handle::Sqs { receipt: m.receipt },
                })
                .collect()),
        }
    }

    /// Acknowledges (JetStream) or deletes (SQS) `notices`; returns how
    /// many could not be, which come back and change nothing.
    pub async fn settle(&self, notices: &[Notice]) -> usize {
        match self {
            Inbox::JetStream(_) => {
                let mut lost = 0;
                for notice in notices {
                    if let Handle::JetStream(message) = &notice.handle
                        && message.ack().await.is_err()
                    {
                        lost += 1;
                    }
                }
                lost
            }
            Inbox::Sqs(queue) => {
                let receipts: Vec<String> = notices
                    .iter()
                    .filter_map(|n| match &n.handle {
                        Handle::Sqs { receipt } => Some(receipt.clone()),
                        Handle::JetStream(_) => None,
                    })
                    .collect();
                queue.delete(&receipts).await.len()
            }
        }
    }
}
