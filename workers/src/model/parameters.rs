//! What the optimiser, the checkpoint and parameter-wise methods see of a network: its
//! trainable buffers in a fixed order, and its named tensors.
//!
//! An MLP's parameters are [`Layers`]; a conv net is its own parameter set (a gradient or an
//! optimiser moment is a [`ConvNet`] of the same structure). Code written against this trait
//! — the optimisers, checkpoints, L2 and EWC-style penalties — works on both.

use super::convnet::{BasicBlock, BatchNorm2d, Conv2d, ConvNet, Layer};
use super::mlp::Layers;

/// A named tensor of a parameter set, for checkpoints.
pub struct NamedTensor<'a> {
    /// Name, unique within the set (`3.weight`, `5.conv1.weight`, `2.running_mean`).
    pub name: String,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Values.
    pub values: &'a [f32],
}

/// Something shaped like a network's parameters: the parameters themselves, gradients,
/// optimiser moments.
pub trait Parameters: Clone + Send + 'static {
    /// All zeros, with the same structure.
    fn zeros_like(&self) -> Self;
    /// Every trainable buffer, in a fixed order (the order of [`Parameters::slices_mut`]).
    fn slices(&self) -> Vec<&[f32]>;
    /// Every trainable buffer, mutable.
    fn slices_mut(&mut self) -> Vec<&mut [f32]>;
    /// Every tensor a checkpoint stores: the trainable buffers and any state kept with them
    /// (batch norm's running statistics), named.
    fn tensors(&self) -> Vec<NamedTensor<'_>>;
    /// The tensors of [`Parameters::tensors`], mutable, in the same order.
    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])>;
    /// Number of trainable entries.
    fn trainable_len(&self) -> usize {
        self.slices().iter().map(|s| s.len()).sum()
    }
}

impl Parameters for Layers {
    fn zeros_like(&self) -> Self {
        Layers::zeros_like(self)
    }

    fn slices(&self) -> Vec<&[f32]> {
        self.buffers().collect()
    }

    fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        self.buffers_mut().map(|b| b.as_mut_slice()).collect()
    }

    fn tensors(&self) -> Vec<NamedTensor<'_>> {
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            out.push(NamedTensor {
                name: format!("{l}.weight"),
                shape: vec![layer.outputs, layer.inputs],
                values: &layer.weight,
            });
            out.push(NamedTensor {
                name: format!("{l}.bias"),
                shape: vec![layer.outputs],
                values: &layer.bias,
            });
        }
        out
    }

    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (l, layer) in self.layers.iter_mut().enumerate() {
            out.push((format!("{l}.weight"), layer.weight.as_mut_slice()));
            out.push((format!("{l}.bias"), layer.bias.as_mut_slice()));
        }
        out
    }
}

/// Visits a conv net's buffers with their names: `trainable` tells whether a buffer is a
/// parameter (not a running statistic).
fn visit_conv<'a>(net: &'a ConvNet, f: &mut dyn FnMut(String, Vec<usize>, &'a [f32], bool)) {
    fn conv<'a>(p: &str, c: &'a Conv2d, f: &mut dyn FnMut(String, Vec<usize>, &'a [f32], bool)) {
        f(format!("{p}weight"), vec![c.geometry.out_channels, c.geometry.k()], &c.weight, true);
        if let Some(b) = &c.bias {
            f(format!("{p}bias"), vec![b.len()], b, true);
        }
    }
    fn norm<'a>(p: &str, n: &'a BatchNorm2d, f: &mut dyn FnMut(String, Vec<usize>, &'a [f32], bool)) {
        f(format!("{p}gamma"), vec![n.channels], &n.gamma, true);
        f(format!("{p}beta"), vec![n.channels], &n.beta, true);
        f(format!("{p}running_mean"), vec![n.channels], &n.running_mean, false);
        f(format!("{p}running_var"), vec![n.channels], &n.running_var, false);
    }
    fn block<'a>(p: &str, b: &'a BasicBlock, f: &mut dyn FnMut(String, Vec<usize>, &'a [f32], bool)) {
        conv(&format!("{p}conv1."), &b.conv1, f);
        norm(&format!("{p}bn1."), &b.bn1, f);
        conv(&format!("{p}conv2."), &b.conv2, f);
        norm(&format!("{p}bn2."), &b.bn2, f);
        if let Some((c, n)) = &b.shortcut {
            conv(&format!("{p}shortcut.conv."), c, f);
            norm(&format!("{p}shortcut.bn."), n, f);
        }
    }
    for (l, layer) in net.layers.iter().enumerate() {
        let p = format!("{l}.");
        match layer {
            Layer::Conv2d(c) => conv(&p, c, f),
            Layer::BatchNorm2d(n) => norm(&p, n, f),
            Layer::Linear(lin) => {
                f(format!("{p}weight"), vec![lin.outputs, lin.inputs], &lin.weight, true);
                f(format!("{p}bias"), vec![lin.outputs], &lin.bias, true);
            }
            Layer::BasicBlock(b) => block(&p, b, f),
            Layer::Relu
            | Layer::MaxPool2d(_)
            | Layer::AvgPool2d(_)
            | Layer::GlobalAvgPool
            | Layer::Flatten => {}
        }
    }
}

/// Every buffer of a conv net, mutable, in [`visit_conv`]'s order, with whether it is trainable.
fn conv_buffers_mut(net: &mut ConvNet) -> Vec<(&mut Vec<f32>, bool)> {
    type Out<'a> = Vec<(&'a mut Vec<f32>, bool)>;
    fn conv<'a>(c: &'a mut Conv2d, out: &mut Out<'a>) {
        let Conv2d { weight, bias, .. } = c;
        out.push((weight, true));
        if let Some(b) = bias.as_mut() {
            out.push((b, true));
        }
    }
    fn norm<'a>(n: &'a mut BatchNorm2d, out: &mut Out<'a>) {
        let BatchNorm2d { gamma, beta, running_mean, running_var, .. } = n;
        out.extend([(gamma, true), (beta, true), (running_mean, false), (running_var, false)]);
    }
    let mut out: Out<'_> = Vec::new();
    for layer in &mut net.layers {
        match layer {
            Layer::Conv2d(c) => conv(c, &mut out),
            Layer::BatchNorm2d(n) => norm(n, &mut out),
            Layer::Linear(lin) => {
                let crate::model::Linear { weight, bias, .. } = lin;
                out.push((weight, true));
                out.push((bias, true));
            }
            Layer::BasicBlock(b) => {
                let BasicBlock { conv1, bn1, conv2, bn2, shortcut } = &mut **b;
                conv(conv1, &mut out);
                norm(bn1, &mut out);
                conv(conv2, &mut out);
                norm(bn2, &mut out);
                if let Some((c, n)) = shortcut.as_mut() {
                    conv(c, &mut out);
                    norm(n, &mut out);
                }
            }
            Layer::Relu
            | Layer::MaxPool2d(_)
            | Layer::AvgPool2d(_)
            | Layer::GlobalAvgPool
            | Layer::Flatten => {}
        }
    }
    out
}

impl Parameters for ConvNet {
    fn zeros_like(&self) -> Self {
        ConvNet::zeros_like(self)
    }

    fn slices(&self) -> Vec<&[f32]> {
        let mut out = Vec::new();
        visit_conv(self, &mut |_, _, v, trainable| {
            if trainable {
                out.push(v)
            }
        });
        out
    }

    fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        conv_buffers_mut(self).into_iter().filter(|(_, t)| *t).map(|(v, _)| v.as_mut_slice()).collect()
    }

    fn tensors(&self) -> Vec<NamedTensor<'_>> {
        let mut out = Vec::new();
        visit_conv(self, &mut |name, shape, values, _| out.push(NamedTensor { name, shape, values }));
        out
    }

    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let names: Vec<String> = self.tensors().into_iter().map(|t| t.name).collect();
        names.into_iter().zip(conv_buffers_mut(self)).map(|(n, (v, _))| (n, v.as_mut_slice())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::convnet::architectures;
    use crate::rng;

    #[test]
    fn a_conv_nets_trainable_slices_are_its_parameters_and_its_tensors_add_the_running_statistics() {
        let mut net = architectures::reduced_resnet18(10, &mut rng::stream(0, "t", 0)).unwrap();
        assert_eq!(net.trainable_len(), net.parameter_count());
        let tensors = net.tensors();
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"0.weight") && names.iter().any(|n| n.ends_with("shortcut.bn.running_var")));
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "names are unique");
        let total: usize = tensors.iter().map(|t| t.values.len()).sum();
        let state: usize =
            tensors.iter().filter(|t| t.name.contains("running_")).map(|t| t.values.len()).sum();
        assert_eq!(total, net.parameter_count() + state);
        for t in &tensors {
            assert_eq!(t.shape.iter().product::<usize>(), t.values.len(), "{}", t.name);
        }
        // The mutable views are the same buffers, in the same order.
        let lens: Vec<usize> = tensors.iter().map(|t| t.values.len()).collect();
        drop(tensors);
        let mut_lens: Vec<usize> = net.tensors_mut().iter().map(|(_, v)| v.len()).collect();
        assert_eq!(lens, mut_lens);
        for s in net.slices_mut() {
            s.fill(0.5);
        }
        assert!(net.slices().iter().all(|s| s.iter().all(|&v| v == 0.5)));
        assert!(net.tensors().iter().filter(|t| t.name.ends_with("running_var")).all(|t| t.values[0] == 1.0));
    }
}
