//! Whether a running pipeline is ready, as the API's `/ready` answers: it
//! takes input, and no backend is known to be down. The engine sets the
//! first; sink drivers mark their backend down when a flush could not
//! reach it and up when one succeeds, the engine does so for the queue and
//! the transforms, and each source (through its telemetry) for its
//! upstream service.

use crate::telemetry::catalogue::READY;
use std::{
    collections::BTreeSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

#[derive(Default)]
pub struct Readiness {
    taking_input: AtomicBool,
    down: Mutex<BTreeSet<String>>,
}

impl Readiness {
    pub fn set_taking_input(&self, taking: bool) {
        self.taking_input.store(taking, Ordering::Relaxed);
        self.export();
    }

    /// Marks `component`'s backend down; true if it was up until now.
    pub fn backend_down(&self, component: &str) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let changed = !down.contains(component) && down.insert(component.to_string());
        drop(down);
        if changed {
            self.export();
        }
        changed
    }

    /// Marks `component`'s backend up; true if it was down until now.
    /// Called after every successful receive and flush: without a change
    /// it only looks.
    pub fn backend_up(&self, component: &str) -> bool {
        let changed = self.down.lock().unwrap_or_else(|e| e.into_inner()).remove(component);
        if changed {
            self.export();
        }
        changed
    }

    /// The `sluice_ready` gauge follows the answer.
    fn export(&self) {
        let ready =
            self.taking_input.load(Ordering::Relaxed) && self.down.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        READY.gauge(&[]).set(if ready { 1.0 } else { 0.0 });
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        if !self.taking_input.load(Ordering::Relaxed) {
            return Err("not taking input".into());
        }
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_empty() {
            Ok(())
        } else {
            let names: Vec<&str> = down.iter().map(String::as_str).collect();
            Err(format!("backend unavailable for {}", names.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_taking_input_with_every_backend_up() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err("not taking input".into()));
        r.set_taking_input(true);
        assert_eq!(r.check(), Ok(()));
        assert!(r.backend_down("sink pg"));
        assert!(!r.backend_down("sink pg"), "reported once");
        assert!(r.backend_down("transforms"));
        assert_eq!(r.check(), Err("backend unavailable for sink pg, transforms".into()));
        assert!(r.backend_up("sink pg"));
        assert!(!r.backend_up("sink pg"));
        assert!(r.backend_up("transforms"));
        assert_eq!(r.check(), Ok(()));
    }
}
