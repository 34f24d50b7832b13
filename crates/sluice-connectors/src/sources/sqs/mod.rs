//! The SQS source (`type = "sqs"`): events other systems send to an Amazon
//! SQS queue (directly or through an SNS topic), received by long polling
//! and deleted from SQS only once they are durable in Sluice's queue.

mod config;
mod source;

pub use config::SqsSourceConfig;
pub(crate) use config::check_queue_url;
pub use source::SqsSource;

#[cfg(test)]
mod tests;
