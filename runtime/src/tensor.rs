//! An owned, dense, row-major f32 tensor: what the public API takes and returns.

/// A dense row-major `f32` tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// The data length does not match the shape.
#[derive(Debug, thiserror::Error)]
#[error("shape {shape:?} needs {expected} elements, got {found}")]
pub struct ShapeError {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub found: usize,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, ShapeError> {
        let expected =
            shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        if expected != data.len() {
            return Err(ShapeError { shape, expected, found: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let len = shape.iter().product();
        Tensor { shape, data: vec![0.0; len] }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}
