//! The method's whole state in a checkpoint: the field's bases and their optimiser states, the
//! committed regions (anchors and factored snapshots), the kept versions, the drift references
//! and the running loss sums. Every array is stored as is, so a resumed run is bit-identical.

use serde::{Deserialize, Serialize};

use super::config::Settings;
use super::field::{Basis, Field};
use super::{FieldState, Overlap, Reference, Region, Running, Version};
use crate::method::{MethodError, MethodState};
use crate::optim::{Optimizer, OptimizerConfig};

#[derive(Serialize, Deserialize)]
struct BasisMeta {
    task: usize,
    head: (usize, usize),
    frozen: bool,
    silenced_in: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct RegionMeta {
    task: usize,
    bases: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct VersionMeta {
    task: usize,
    bases: Vec<BasisMeta>,
    regions: usize,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    bases: Vec<BasisMeta>,
    w0_frozen: bool,
    regions: Vec<RegionMeta>,
    versions: Vec<VersionMeta>,
    references: Vec<usize>,
    running: Running,
    commits: usize,
    overlaps: Vec<Overlap>,
}

fn basis_meta(b: &Basis) -> BasisMeta {
    BasisMeta {
        task: b.task,
        head: (b.head.start, b.head.end),
        frozen: b.frozen,
        silenced_in: b.silenced_in.clone(),
    }
}

fn put_field(out: &mut MethodState, prefix: &str, field: &Field) {
    for (i, b) in field.bases.iter().enumerate() {
        out.put_f32(format!("{prefix}.basis.{i}.center"), b.center.clone());
        out.put_sized_layers(&format!("{prefix}.basis.{i}.delta"), &b.delta);
    }
    for (r, c) in field.regions.iter().enumerate() {
        out.put_f32(format!("{prefix}.region.{r}.center"), c.clone());
    }
}

fn read_field(
    saved: &MethodState,
    prefix: &str,
    settings: &Settings,
    bases: &[BasisMeta],
    regions: usize,
) -> Result<Field, MethodError> {
    let mut field = Field {
        radius: settings.radius,
        spacing: settings.spacing,
        dim: settings.coordinate_dim,
        bases: Vec::new(),
        regions: Vec::new(),
    };
    for (i, m) in bases.iter().enumerate() {
        field.bases.push(Basis {
            task: m.task,
            head: m.head.0..m.head.1,
            center: saved.f32(&format!("{prefix}.basis.{i}.center"))?.to_vec(),
            delta: saved.sized_layers(&format!("{prefix}.basis.{i}.delta"))?,
            frozen: m.frozen,
            silenced_in: m.silenced_in.clone(),
        });
    }
    for r in 0..regions {
        field.regions.push(saved.f32(&format!("{prefix}.region.{r}.center"))?.to_vec());
    }
    Ok(field)
}

pub(super) fn save(state: &FieldState, out: &mut MethodState) {
    let meta = Meta {
        bases: state.field.bases.iter().map(basis_meta).collect(),
        w0_frozen: state.w0_frozen,
        regions: state
            .regions
            .iter()
            .map(|r| RegionMeta { task: r.task, bases: r.bases.iter().map(|(b, _)| *b).collect() })
            .collect(),
        versions: state
            .versions
            .iter()
            .map(|v| VersionMeta {
                task: v.task,
                bases: v.field.bases.iter().map(basis_meta).collect(),
                regions: v.field.regions.len(),
            })
            .collect(),
        references: state.references.iter().map(|r| r.task).collect(),
        running: state.running,
        commits: state.commits,
        overlaps: state.overlaps.clone(),
    };
    out.meta = serde_json::to_value(meta).expect("the method's metadata serialises");
    put_field(out, "field", &state.field);
    for (i, o) in state.optimizers.iter().enumerate() {
        for (name, set) in o.states() {
            out.put_layers(&format!("optimizer.{i}.{name}"), set);
        }
    }
    for (i, r) in state.regions.iter().enumerate() {
        out.put_f32(format!("region.{i}.anchors"), r.anchors.clone());
        out.put_sized_layers(&format!("region.{i}.w0"), &r.w0);
        for (b, l) in &r.bases {
            out.put_sized_layers(&format!("region.{i}.basis.{b}"), l);
        }
    }
    for (i, v) in state.versions.iter().enumerate() {
        out.put_sized_layers(&format!("version.{i}.w0"), &v.w0);
        put_field(out, &format!("version.{i}"), &v.field);
    }
    for (i, r) in state.references.iter().enumerate() {
        out.put_f32(format!("reference.{i}.inputs"), r.inputs.clone());
        out.put_f32(format!("reference.{i}.outputs"), r.outputs.clone());
    }
}

pub(super) fn load(
    saved: &MethodState,
    settings: &Settings,
    config: OptimizerConfig,
) -> Result<Option<FieldState>, MethodError> {
    if saved.meta.is_null() {
        return Ok(None);
    }
    let meta: Meta = serde_json::from_value(saved.meta.clone())
        .map_err(|e| MethodError::State(format!("unreadable weight-field metadata: {e}")))?;
    let field = read_field(saved, "field", settings, &meta.bases, meta.regions.len())?;
    let mut optimizers = Vec::with_capacity(field.bases.len());
    for (i, b) in field.bases.iter().enumerate() {
        let mut o = Optimizer::for_parameters(config, &b.delta);
        for (name, set, _) in o.states_mut() {
            saved.read_layers_into(&format!("optimizer.{i}.{name}"), set)?;
        }
        optimizers.push(o);
    }
    let mut regions = Vec::with_capacity(meta.regions.len());
    for (i, r) in meta.regions.iter().enumerate() {
        let mut bases = Vec::new();
        for &b in &r.bases {
            bases.push((b, saved.sized_layers(&format!("region.{i}.basis.{b}"))?));
        }
        regions.push(Region {
            task: r.task,
            anchors: saved.f32(&format!("region.{i}.anchors"))?.to_vec(),
            w0: saved.sized_layers(&format!("region.{i}.w0"))?,
            bases,
        });
    }
    let mut versions = Vec::with_capacity(meta.versions.len());
    for (i, v) in meta.versions.iter().enumerate() {
        versions.push(Version {
            task: v.task,
            w0: saved.sized_layers(&format!("version.{i}.w0"))?,
            field: read_field(saved, &format!("version.{i}"), settings, &v.bases, v.regions)?,
        });
    }
    let mut references = Vec::with_capacity(meta.references.len());
    for (i, &task) in meta.references.iter().enumerate() {
        references.push(Reference {
            task,
            inputs: saved.f32(&format!("reference.{i}.inputs"))?.to_vec(),
            outputs: saved.f32(&format!("reference.{i}.outputs"))?.to_vec(),
        });
    }
    Ok(Some(FieldState {
        field,
        optimizers,
        w0_frozen: meta.w0_frozen,
        regions,
        versions,
        references,
        running: meta.running,
        commits: meta.commits,
        overlaps: meta.overlaps,
    }))
}
