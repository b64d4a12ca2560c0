//! The method's whole state in a checkpoint: the field and its optimiser state, the committed
//! regions, every version, the drift references and the running loss sums.
//!
//! Region statistics are f64 and stored as their bit patterns (u64), so masks computed after a
//! resume are the same to the last bit.

use serde::{Deserialize, Serialize};

use super::region::{InputGaussian, LockTest, Region};
use super::{parameter_set, FieldState, Reference, Running, Version};
use crate::method::{MethodError, MethodState};
use crate::model::field::{FieldLayout, WeightField};
use crate::model::{Layers, Linear};
use crate::optim::{Optimizer, OptimizerConfig};

#[derive(Serialize, Deserialize)]
struct RegionMeta {
    task: usize,
    radius_anchor: f64,
    radius_lock: f64,
    mask_width: f64,
    /// Whether the lock test is in input space (its Gaussian is in the tensors).
    input_lock: bool,
    width: usize,
}

#[derive(Serialize, Deserialize)]
struct VersionMeta {
    task: usize,
    layout: FieldLayout,
}

#[derive(Serialize, Deserialize)]
struct ReferenceMeta {
    task: usize,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    layout: FieldLayout,
    backbone_frozen: bool,
    running: Running,
    regions: Vec<RegionMeta>,
    versions: Vec<VersionMeta>,
    references: Vec<ReferenceMeta>,
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn unbits(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&x| f64::from_bits(x)).collect()
}

pub(super) fn save(state: &FieldState, out: &mut MethodState) {
    let meta = Meta {
        layout: state.field.layout.clone(),
        backbone_frozen: state.backbone_frozen,
        running: state.running,
        regions: state
            .regions
            .iter()
            .map(|r| RegionMeta {
                task: r.task,
                radius_anchor: r.radius_anchor,
                radius_lock: r.lock.radius,
                mask_width: r.lock.mask_width,
                input_lock: r.lock.input.is_some(),
                width: r.width,
            })
            .collect(),
        versions: state
            .versions
            .iter()
            .map(|v| VersionMeta { task: v.task, layout: v.field.layout.clone() })
            .collect(),
        references: state.references.iter().map(|r| ReferenceMeta { task: r.task }).collect(),
    };
    out.meta = serde_json::to_value(meta).expect("the method's metadata serialises");
    out.put_layers("field", &state.field.params);
    for (name, set) in state.optimizer.states() {
        out.put_layers(&format!("optimizer.{name}"), set);
    }
    for (i, r) in state.regions.iter().enumerate() {
        out.put_u64(format!("region.{i}.mean"), bits(&r.mean));
        out.put_u64(format!("region.{i}.whitening"), bits(&r.whitening));
        out.put_f32(format!("region.{i}.anchors"), r.anchors.clone());
        out.put_f32(format!("region.{i}.snapshot"), r.snapshot.clone());
        out.put_f32(format!("region.{i}.mean_gates"), r.mean_gates.clone());
        if let Some(g) = &r.lock.input {
            out.put_u64(format!("region.{i}.input_mean"), bits(&g.mean));
            out.put_u64(format!("region.{i}.input_inv_sd"), bits(&g.inv_sd));
        }
    }
    for (i, v) in state.versions.iter().enumerate() {
        out.put_layers(&format!("version.{i}"), &v.field.params);
    }
    for (i, r) in state.references.iter().enumerate() {
        out.put_f32(format!("reference.{i}.inputs"), r.inputs.clone());
        out.put_f32(format!("reference.{i}.outputs"), r.outputs.clone());
    }
}

/// Parameters of the shapes `layout` describes, read from `prefix.*`.
fn read_field(saved: &MethodState, prefix: &str, layout: FieldLayout) -> Result<WeightField, MethodError> {
    let mut params = Layers {
        layers: WeightField::shapes(&layout).into_iter().map(|(i, o)| Linear::zeros(i, o)).collect(),
    };
    saved.read_layers_into(prefix, &mut params)?;
    WeightField::from_parts(layout, params).map_err(|e| MethodError::State(format!("`{prefix}`: {e}")))
}

pub(super) fn load(saved: &MethodState, config: OptimizerConfig) -> Result<Option<FieldState>, MethodError> {
    if saved.meta.is_null() {
        return Ok(None);
    }
    let meta: Meta = serde_json::from_value(saved.meta.clone())
        .map_err(|e| MethodError::State(format!("unreadable weight-field metadata: {e}")))?;
    let field = read_field(saved, "field", meta.layout)?;
    let mut optimizer = Optimizer::new(config, &parameter_set(field.params.clone()));
    for (name, set, _) in optimizer.states_mut() {
        saved.read_layers_into(&format!("optimizer.{name}"), set)?;
    }
    let mut regions = Vec::with_capacity(meta.regions.len());
    for (i, r) in meta.regions.into_iter().enumerate() {
        let input = if r.input_lock {
            Some(InputGaussian {
                mean: unbits(saved.u64(&format!("region.{i}.input_mean"))?),
                inv_sd: unbits(saved.u64(&format!("region.{i}.input_inv_sd"))?),
            })
        } else {
            None
        };
        regions.push(Region {
            task: r.task,
            mean: unbits(saved.u64(&format!("region.{i}.mean"))?),
            whitening: unbits(saved.u64(&format!("region.{i}.whitening"))?),
            radius_anchor: r.radius_anchor,
            lock: LockTest { input, radius: r.radius_lock, mask_width: r.mask_width },
            anchors: saved.f32(&format!("region.{i}.anchors"))?.to_vec(),
            snapshot: saved.f32(&format!("region.{i}.snapshot"))?.to_vec(),
            width: r.width,
            mean_gates: saved.f32(&format!("region.{i}.mean_gates"))?.to_vec(),
        });
    }
    let mut versions = Vec::with_capacity(meta.versions.len());
    for (i, v) in meta.versions.into_iter().enumerate() {
        versions.push(Version { task: v.task, field: read_field(saved, &format!("version.{i}"), v.layout)? });
    }
    let mut references = Vec::with_capacity(meta.references.len());
    for (i, r) in meta.references.into_iter().enumerate() {
        references.push(Reference {
            task: r.task,
            inputs: saved.f32(&format!("reference.{i}.inputs"))?.to_vec(),
            outputs: saved.f32(&format!("reference.{i}.outputs"))?.to_vec(),
        });
    }
    let backbone_sizes = field.layout.sizes.clone();
    Ok(Some(FieldState {
        field_grads: Layers::zeros_like(&field.params),
        backbone_grads: Layers::zeros(&backbone_sizes),
        field,
        optimizer,
        backbone_frozen: meta.backbone_frozen,
        regions,
        versions,
        references,
        running: meta.running,
    }))
}
