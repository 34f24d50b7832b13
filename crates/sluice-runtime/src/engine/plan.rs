//! Each source's plan: the transforms (in dependency order) and sinks its
//! batches reach, computed once at start, and running a batch through it.
//! (Not to be confused with the lake's table routes, which pick a table per
//! schema key.)

use std::{collections::BTreeMap, sync::Arc};

use sluice_core::{BatchInfo, Event, Rejected, StageError, Transform, telemetry::TransformTelemetry};

pub struct TransformNode {
    pub name: String,
    pub inputs: Vec<String>,
    pub transform: Arc<dyn Transform>,
    telemetry: TransformTelemetry,
}

impl TransformNode {
    pub fn new(name: String, inputs: Vec<String>, transform: Arc<dyn Transform>) -> TransformNode {
        TransformNode {
            telemetry: TransformTelemetry::new(&name),
            name,
            inputs,
            transform,
        }
    }
}

/// What one source's batches pass through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indices into the transform list, in dependency order.
    pub transforms: Vec<usize>,
    /// Indices into the sink list.
    pub sinks: Vec<usize>,
}

/// Transforms ordered so that every transform comes after its inputs.
pub fn dependency_order(transforms: &[TransformNode]) -> Vec<usize> {
    let mut order = Vec::new();
    let mut placed = vec![false; transforms.len()];
    while order.len() < transforms.len() {
        let before = order.len();
        for (i, t) in transforms.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let ready = t.inputs.iter().all(|input| {
                transforms
                    .iter()
                    .position(|o| &o.name == input)
                    .is_none_or(|j| placed[j])
            });
            if ready {
                placed[i] = true;
                order.push(i);
            }
        }
        assert!(
            order.len() > before,
            "transform graph has a cycle; the config loader refuses those"
        );
    }
    order
}

/// The plan of `source`: everything downstream of it.
pub fn plan_for(source: &str, transforms: &[TransformNode], order: &[usize], sink_inputs: &[Vec<String>]) -> Plan {
    let mut reached: Vec<&str> = vec![source];
    let mut plan = Plan {
        transforms: Vec::new(),
        sinks: Vec::new(),
    };
    for &i in order {
        if transforms[i]
            .inputs
            .iter()
            .any(|input| reached.contains(&input.as_str()))
        {
            reached.push(&transforms[i].name);
            plan.transforms.push(i);
        }
    }
    for (i, inputs) in sink_inputs.iter().enumerate() {
        if inputs.iter().any(|input| reached.contains(&input.as_str())) {
            plan.sinks.push(i);
        }
    }
    plan
}

/// Output of running a batch's events through its plan.
pub struct Routed {
    /// Events for each sink of the plan, in plan order.
    pub per_sink: Vec<(usize, Vec<Event>)>,
    /// Refused events, with the transform that refused them.
    pub rejected: Vec<(String, Rejected)>,
}

pub async fn run_plan(
    source: &str,
    batch: BatchInfo<'_>,
    events: Vec<Event>,
    plan: &Plan,
    transforms: &[TransformNode],
    sink_inputs: &[Vec<String>],
) -> Result<Routed, StageError> {
    let mut outputs: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    crate::tap::publish(source, &events);
    outputs.insert(source, events);
    let mut rejected = Vec::new();
    let gather = |outputs: &BTreeMap<&str, Vec<Event>>, inputs: &[String]| -> Vec<Event> {
        let mut v = Vec::new();
        for input in inputs {
            if let Some(events) = outputs.get(input.as_str()) {
                v.extend(events.iter().cloned());
            }
        }
        v
    };
    for &i in &plan.transforms {
        let node = &transforms[i];
        let input = gather(&outputs, &node.inputs);
        let received = input.len() as u64;
        let started = std::time::Instant::now();
        let out = node.transform.process(batch, input).await?;
        node.telemetry.processed(
            started.elapsed(),
            received,
            out.events.len() as u64,
            out.dropped,
            out.rejected.iter().map(|r| r.reason.as_str()),
        );
        rejected.extend(out.rejected.into_iter().map(|r| (node.name.clone(), r)));
        crate::tap::publish(&node.name, &out.events);
        outputs.insert(&node.name, out.events);
    }
    let per_sink = plan
        .sinks
        .iter()
        .map(|&s| (s, gather(&outputs, &sink_inputs[s])))
        .collect();
    Ok(Routed { per_sink, rejected })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use sluice_core::TransformOutput;

    struct Pass;
    #[async_trait]
    impl Transform for Pass {
        async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
            Ok(TransformOutput {
                events,
                ..TransformOutput::default()
            })
        }
    }

    fn node(name: &str, inputs: &[&str]) -> TransformNode {
        TransformNode::new(
            name.into(),
            inputs.iter().map(|s| s.to_string()).collect(),
            Arc::new(Pass),
        )
    }

    #[test]
    fn routes_follow_inputs_in_dependency_order() {
        // b depends on a; c only on source y.
        let transforms = vec![node("b", &["a"]), node("a", &["x"]), node("c", &["y"])];
        let order = dependency_order(&transforms);
        assert_eq!(order, vec![1, 2, 0]);
        let sinks = vec![vec!["b".to_string()], vec!["c".to_string(), "a".to_string()]];
        assert_eq!(
            plan_for("x", &transforms, &order, &sinks),
            Plan {
                transforms: vec![1, 0],
                sinks: vec![0, 1]
            }
        );
        assert_eq!(
            plan_for("y", &transforms, &order, &sinks),
            Plan {
                transforms: vec![2],
                sinks: vec![1]
            }
        );
    }
}
