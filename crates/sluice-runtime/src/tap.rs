//! Live samples of what each stage emits, for `sluice tail`: the events a
//! source put on the queue (as the consumer takes them), a transform's
//! output, a sink's input. A stage's events are published to a broadcast
//! channel only while someone listens to some stage: with no listener,
//! publishing is one atomic load. A listener that falls behind misses
//! events (it is a sample) rather than slowing the pipeline.

use std::{
    collections::HashMap,
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use sluice_core::Event;
use tokio::sync::broadcast;

/// Events a listener may fall behind by before it misses some.
const BACKLOG: usize = 1024;

/// Listeners of every stage, for the fast path.
static LISTENERS: AtomicUsize = AtomicUsize::new(0);

static CHANNELS: LazyLock<Mutex<HashMap<String, broadcast::Sender<Bytes>>>> = LazyLock::new(Default::default);

/// Publishes `events` as `stage`'s, if anyone listens to it.
pub fn publish(stage: &str, events: &[Event]) {
    if LISTENERS.load(Ordering::Relaxed) == 0 || events.is_empty() {
        return;
    }
    let channels = CHANNELS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = channels.get(stage).filter(|tx| tx.receiver_count() > 0) {
        for event in events {
            let _ = tx.send(event.payload.clone());
        }
    }
}

/// A listener of one stage; it stops counting as one when dropped.
pub struct Tap {
    pub events: broadcast::Receiver<Bytes>,
}

impl Tap {
    pub fn listen(stage: &str) -> Tap {
        let mut channels = CHANNELS.lock().unwrap_or_else(|e| e.into_inner());
        let tx = channels
            .entry(stage.to_string())
            .or_insert_with(|| broadcast::channel(BACKLOG).0);
        LISTENERS.fetch_add(1, Ordering::Relaxed);
        Tap { events: tx.subscribe() }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        LISTENERS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &'static str) -> Event {
        Event {
            line: 0,
            raw: Bytes::from_static(text.as_bytes()),
            payload: Bytes::from_static(text.as_bytes()),
            id: None,
            time_us: None,
            schema: None,
        }
    }

    #[tokio::test]
    async fn a_listener_sees_its_stage_from_when_it_listens_and_nothing_when_gone() {
        publish("tap-test-a", &[event("{\"before\":1}")]);
        let mut tap = Tap::listen("tap-test-a");
        publish("tap-test-b", &[event("{\"other\":1}")]);
        publish("tap-test-a", &[event("{\"n\":1}"), event("{\"n\":2}")]);
        assert_eq!(tap.events.recv().await.unwrap(), "{\"n\":1}");
        assert_eq!(tap.events.recv().await.unwrap(), "{\"n\":2}");
        assert!(
            tap.events.try_recv().is_err(),
            "nothing from before or from other stages"
        );
        drop(tap);
        let channels = CHANNELS.lock().unwrap();
        assert_eq!(channels["tap-test-a"].receiver_count(), 0);
    }
}
