//! An SQS queue as Sluice uses it: long-polled receives that bring the
//! system attributes the sources need (receive count, sent time), deletes
//! and visibility changes in batches of ten (SQS's limit per call), and the
//! queue's approximate counts. Used by the `sqs` source and by the objects
//! source's SQS notifications.

use aws_sdk_sqs::{
    Client,
    error::DisplayErrorContext,
    types::{
        ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
        QueueAttributeName,
    },
};

use super::AwsTarget;

/// The most entries SQS takes in one batch call, and messages in one receive.
pub const MAX_PER_CALL: usize = 10;

/// One queue, reached through one client.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

/// A message a delete left in the queue: its receipt, why, and whether
/// the call itself failed (SQS could not be reached) rather than SQS
/// refusing this entry (an expired receipt handle).
#[derive(Debug)]
pub struct NotDeleted {
    pub receipt: String,
    pub why: String,
    pub call_failed: bool,
}

/// A message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    /// What deletes it or changes its visibility (valid for this receive only).
    pub receipt: String,
    pub body: String,
    /// How many times SQS handed it out, this time included.
    pub receive_count: u32,
    /// When it was sent, in Unix milliseconds.
    pub sent_ms: Option<u64>,
}

/// The queue's approximate message counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Backlog {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

fn error_text<E: std::error::Error>(what: &str, e: E) -> String {
    format!("{what}: {}", DisplayErrorContext(e))
}

impl SqsQueue {
    /// A client for the queue at `url` (region, endpoint and credentials as
    /// [`AwsTarget`] finds them). Makes no call.
    pub async fn connect(target: &AwsTarget, url: &str) -> Result<SqsQueue, String> {
        let target = AwsTarget {
            resource_url: Some(url.to_string()),
            ..target.clone()
        };
        let config = target.sdk_config().await?;
        Ok(SqsQueue {
            client: Client::new(&config),
            url: url.to_string(),
        })
    }

    /// The queue's name: the URL's last segment.
    pub fn name(&self) -> &str {
        self.url.trim_end_matches('/').rsplit('/').next().unwrap_or(&self.url)
    }

    /// Up to `max` messages (at most ten), waiting up to `wait_secs` for the
    /// first; they stay invisible to others for `visibility_secs`.
    pub async fn receive(&self, max: usize, wait_secs: u32, visibility_secs: u32) -> Result<Vec<Received>, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_PER_CALL) as i32)
            .wait_time_seconds(wait_secs as i32)
            .visibility_timeout(visibility_secs as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| error_text("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attribute = |name: &MessageSystemAttributeName| m.attributes().and_then(|a| a.get(name));
                Some(Received {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: attribute(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    sent_ms: attribute(&MessageSystemAttributeName::SentTimestamp).and_then(|v| v.parse().ok()),
                })
            })
            .collect())
    }

    /// Deletes the messages of `receipts`; returns the receipts that were
    /// not deleted, each with why.
    pub async fn delete(&self, receipts: &[String]) -> Vec<NotDeleted> {
        let mut failed = Vec::new();
        let refused = |receipt: &String, why: String| NotDeleted {
            receipt: receipt.clone(),
            why,
            call_failed: false,
        };
        for chunk in receipts.chunks(MAX_PER_CALL) {
            let entries = chunk.iter().enumerate().map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
            });
            let entries = match entries.collect::<Result<Vec<_>, _>>() {
                Ok(entries) => entries,
                Err(e) => {
                    failed.extend(chunk.iter().map(|r| refused(r, e.to_string())));
                    continue;
                }
            };
            let sent = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            match sent {
                Ok(out) => failed.extend(out.failed().iter().filter_map(|f| {
                    let receipt = chunk.get(f.id().parse::<usize>().ok()?)?;
                    Some(refused(
                        receipt,
                        format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                    ))
                })),
                Err(e) => {
                    let why = error_text("DeleteMessageBatch", e);
                    failed.extend(chunk.iter().map(|r| NotDeleted {
                        receipt: r.clone(),
                        why: why.clone(),
                        call_failed: true,
                    }));
                }
            }
        }
        failed
    }

    /// Keeps the messages of `receipts` invisible for `visibility_secs` from
    /// now; returns how many could not be extended.
    pub async fn extend(&self, receipts: &[String], visibility_secs: u32) -> Result<usize, String> {
        let mut missed = 0;
        for chunk in receipts.chunks(MAX_PER_CALL) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(visibility_secs as i32)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error_text("ChangeMessageVisibilityBatch", e))?;
            missed += out.failed().len();
        }
        Ok(missed)
    }

    /// The queue's approximate counts.
    pub async fn backlog(&self) -> Result<Backlog, String> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| error_text("GetQueueAttributes", e))?;
        let count = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Backlog {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    /// A queue reached through `client` (tests build one with fixed credentials).
    #[cfg(test)]
    pub fn from_client(client: Client, url: &str) -> SqsQueue {
        SqsQueue {
            client,
            url: url.to_string(),
        }
    }
}
