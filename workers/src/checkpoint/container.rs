//! The in-memory checkpoint: metadata plus named tensors.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::error::CheckpointError;

/// The element type of a tensor; each is stored little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// IEEE-754 binary32 (parameters, optimiser moments, utilities).
    F32,
    /// Unsigned 32-bit (indices, small counters).
    U32,
    /// Unsigned 64-bit (ages, step counters, RNG words).
    U64,
    /// Bytes (masks, flags).
    U8,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::U32 => 4,
            Dtype::U64 => 8,
            Dtype::U8 => 1,
        }
    }

    /// The name used in the header and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::U32 => "u32",
            Dtype::U64 => "u64",
            Dtype::U8 => "u8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's dimensions, outermost first; `[]` is a scalar (one element). Built from a length
/// (`5` → `[5]`), an array (`[256, 784]`), a slice or a vector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Elements the shape holds, or `None` if the product overflows `usize`.
    pub fn elements(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<usize> for Shape {
    fn from(len: usize) -> Self {
        Shape(vec![len])
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape(dims.to_vec())
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape(dims.to_vec())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(dims)
    }
}

/// A tensor's elements, one variant per [`Dtype`].
#[derive(Clone, Debug)]
pub enum TensorData {
    /// f32 elements.
    F32(Vec<f32>),
    /// u32 elements.
    U32(Vec<u32>),
    /// u64 elements.
    U64(Vec<u64>),
    /// u8 elements.
    U8(Vec<u8>),
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            TensorData::F32(_) => Dtype::F32,
            TensorData::U32(_) => Dtype::U32,
            TensorData::U64(_) => Dtype::U64,
            TensorData::U8(_) => Dtype::U8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size in bytes on disk.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size()
    }
}

/// A named array with a shape; `data.len()` always equals the shape's element count.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Shape,
    data: TensorData,
}

impl Tensor {
    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.data.dtype()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl Sealed for u8 {}
}

/// An element type a checkpoint can hold (f32, u32, u64, u8), so `put`/`get` can be generic.
pub trait Element: Copy + sealed::Sealed + 'static {
    /// Its [`Dtype`].
    const DTYPE: Dtype;
    /// Wraps a vector of this type.
    fn wrap(data: Vec<Self>) -> TensorData;
    /// The elements if `data` holds this type.
    fn view(data: &TensorData) -> Option<&[Self]>;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$variant;
            fn wrap(data: Vec<Self>) -> TensorData {
                TensorData::$variant(data)
            }
            fn view(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

element!(f32, F32);
element!(u32, U32);
element!(u64, U64);
element!(u8, U8);

/// Everything a run needs to continue bit-exactly: free-form metadata (position in the
/// stream, RNG states, counters) and named tensors (parameters, optimiser moments, method
/// state). Names are hierarchical, dot-separated (`model.layer0.weight`,
/// `method.cbp.age.1`), and kept sorted, so the same contents always encode to the same bytes
/// whatever order they were added in.
#[derive(Clone)]
pub struct Checkpoint {
    meta: serde_json::Value,
    tensors: BTreeMap<String, Tensor>,
}

impl fmt::Debug for Checkpoint {
    /// Metadata and the tensor table, not the (possibly millions of) elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table: BTreeMap<&str, (Dtype, &Shape)> =
            self.tensors.iter().map(|(n, t)| (n.as_str(), (t.dtype(), &t.shape))).collect();
        f.debug_struct("Checkpoint").field("meta", &self.meta).field("tensors", &table).finish()
    }
}

impl Checkpoint {
    /// An empty checkpoint carrying the worker's metadata.
    pub fn new(meta: serde_json::Value) -> Self {
        Checkpoint { meta, tensors: BTreeMap::new() }
    }

    /// The metadata given to [`Checkpoint::new`].
    pub fn meta(&self) -> &serde_json::Value {
        &self.meta
    }

    /// Adds a tensor. Errors if the name is taken or malformed (see
    /// [`Checkpoint::tensors_with_prefix`] for the naming scheme) or `data` does not fill
    /// `shape`. Returns `self` so puts chain with `?`.
    pub fn put<T: Element>(
        &mut self,
        name: impl Into<String>,
        shape: impl Into<Shape>,
        data: impl Into<Vec<T>>,
    ) -> Result<&mut Self, CheckpointError> {
        let name = name.into();
        let shape = shape.into();
        let data = data.into();
        check_name(&name)?;
        if shape.elements() != Some(data.len()) {
            return Err(CheckpointError::LengthMismatch {
                expected: shape.elements().unwrap_or(usize::MAX),
                len: data.len(),
                name,
                shape,
            });
        }
        if self.tensors.contains_key(&name) {
            return Err(CheckpointError::DuplicateTensor { name });
        }
        self.tensors.insert(name, Tensor { shape, data: T::wrap(data) });
        Ok(self)
    }

    /// Adds an f32 tensor (see [`Checkpoint::put`]).
    pub fn put_f32(
        &mut self,
        name: impl Into<String>,
        shape: impl Into<Shape>,
        data: impl Into<Vec<f32>>,
    ) -> Result<&mut Self, CheckpointError> {
        self.put(name, shape, data)
    }

    /// Adds a u32 tensor (see [`Checkpoint::put`]).
    pub fn put_u32(
        &mut self,
        name: impl Into<String>,
        shape: impl Into<Shape>,
        data: impl Into<Vec<u32>>,
    ) -> Result<&mut Self, CheckpointError> {
        self.put(name, shape, data)
    }

    /// Adds a u64 tensor (see [`Checkpoint::put`]).
    pub fn put_u64(
        &mut self,
        name: impl Into<String>,
        shape: impl Into<Shape>,
        data: impl Into<Vec<u64>>,
    ) -> Result<&mut Self, CheckpointError> {
        self.put(name, shape, data)
    }

    /// Adds a u8 tensor (see [`Checkpoint::put`]).
    pub fn put_u8(
        &mut self,
        name: impl Into<String>,
        shape: impl Into<Shape>,
        data: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, CheckpointError> {
        self.put(name, shape, data)
    }

    /// The tensor called `name`, whatever its type.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, CheckpointError> {
        self.tensors.get(name).ok_or_else(|| CheckpointError::MissingTensor { name: name.to_owned() })
    }

    /// The elements of tensor `name`, which must hold `T`.
    pub fn get<T: Element>(&self, name: &str) -> Result<&[T], CheckpointError> {
        let tensor = self.tensor(name)?;
        T::view(&tensor.data).ok_or_else(|| CheckpointError::WrongDtype {
            name: name.to_owned(),
            expected: T::DTYPE,
            found: tensor.dtype(),
        })
    }

    /// The elements of tensor `name`, which must hold `T` in exactly `shape` — the check a
    /// restore wants, so a checkpoint of another architecture fails loudly.
    pub fn get_shaped<T: Element>(
        &self,
        name: &str,
        shape: impl Into<Shape>,
    ) -> Result<&[T], CheckpointError> {
        let data = self.get::<T>(name)?;
        let expected = shape.into();
        let found = &self.tensors[name].shape;
        if *found != expected {
            return Err(CheckpointError::WrongShape {
                name: name.to_owned(),
                expected,
                found: found.clone(),
            });
        }
        Ok(data)
    }

    /// f32 tensor `name` (see [`Checkpoint::get`]).
    pub fn f32(&self, name: &str) -> Result<&[f32], CheckpointError> {
        self.get(name)
    }

    /// u32 tensor `name` (see [`Checkpoint::get`]).
    pub fn u32(&self, name: &str) -> Result<&[u32], CheckpointError> {
        self.get(name)
    }

    /// u64 tensor `name` (see [`Checkpoint::get`]).
    pub fn u64(&self, name: &str) -> Result<&[u64], CheckpointError> {
        self.get(name)
    }

    /// u8 tensor `name` (see [`Checkpoint::get`]).
    pub fn u8(&self, name: &str) -> Result<&[u8], CheckpointError> {
        self.get(name)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The names under `prefix`, sorted, matching whole dot-separated segments: `method.cbp`
    /// lists `method.cbp` and `method.cbp.age.1` but not `method.cbpx`. An empty prefix lists
    /// every tensor. A method restoring its state asks for its own subtree this way.
    pub fn tensors_with_prefix<'a>(&'a self, prefix: &'a str) -> Vec<&'a str> {
        self.tensors
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(name, _)| name.as_str())
            .take_while(|name| name.starts_with(prefix))
            .filter(|name| {
                prefix.is_empty()
                    || prefix.ends_with('.')
                    || name.len() == prefix.len()
                    || name.as_bytes()[prefix.len()] == b'.'
            })
            .collect()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Tensors in name order, for encoding.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Assembles a checkpoint from decoded parts whose names, shapes and lengths the decoder
    /// has already checked.
    pub(super) fn from_parts(meta: serde_json::Value, tensors: BTreeMap<String, Tensor>) -> Self {
        Checkpoint { meta, tensors }
    }
}

impl Tensor {
    /// A tensor whose shape the decoder has matched against the data length.
    pub(super) fn from_parts(shape: Shape, data: TensorData) -> Self {
        debug_assert_eq!(shape.elements(), Some(data.len()));
        Tensor { shape, data }
    }
}

/// Longest accepted tensor name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// Names are non-empty, at most [`MAX_NAME_LEN`] bytes, free of whitespace and control
/// characters, and made of non-empty dot-separated segments, so prefix listing is unambiguous.
pub(super) fn check_name(name: &str) -> Result<(), CheckpointError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 1024 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or a control character")
    } else if name.split('.').any(str::is_empty) {
        Some("it has an empty dot-separated segment (leading, trailing or doubled '.')")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CheckpointError::InvalidName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}
