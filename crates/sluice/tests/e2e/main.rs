//! End-to-end tests: the real `sluice` binary against generated events,
//! checked against the generator's oracle and an independent reader.

mod avro;
mod aws_sources;
mod backend_tls;
mod backpressure;
mod clickstream;
mod collector_security;
mod compaction;
mod disk_full;
mod documents;
mod early_flush;
mod faults;
mod generator;
mod hostile;
mod jetstream;
mod kafka;
mod kafka_replay;
mod lookup;
mod objects;
mod observability;
mod outages;
mod postgres;
mod redelivery;
mod replay;
mod replicas;
mod schema_registry;
mod secrets;
mod segment;
mod snowplow;
mod source_outages;
mod status;
mod status_page;
mod support;
mod tail;
mod transform_outages;
mod transforms;
