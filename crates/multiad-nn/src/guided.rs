//! The ReLU of guided backpropagation (Springenberg et al. 2015): forward
//! max(x, 0); backward passes only positive gradients, and only where the
//! input was positive. MKD's saliency maps use it in the cloner.

use candle_core::backend::BackendStorage;
use candle_core::op::Relu;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

struct GuidedRelu;

impl CustomOp1 for GuidedRelu {
    fn name(&self) -> &'static str {
        "guided-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = crate::cpu::f32_values(s, l, "guided relu: input")?;
        let out: Vec<f32> = data.iter().map(|&v| v.max(0.0)).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    /// On a GPU the forward is candle's own ReLU kernel; only the backward
    /// is ours, and it is made of tensor ops.
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        Ok((s.unary_impl::<Relu>(l)?, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let positive = arg.gt(0.0)?.to_dtype(DType::F32)?;
        Ok(Some((grad_res.relu()? * positive)?))
    }
}

/// max(x, 0) whose backward pass is guided (see the module documentation).
pub fn guided_relu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GuidedRelu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_is_relu_and_backward_keeps_positive_gradients_where_the_input_was_positive() {
        let x = Var::new(&[-1.0f32, 2.0, 3.0, -4.0], &Device::Cpu).unwrap();
        let y = guided_relu(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0.0, 2.0, 3.0, 0.0]);
        // d(sum(w * y))/dx with w = [5, -6, 7, 8]: plain ReLU gives [0, -6, 7, 0],
        // the guided one drops the negative gradient: [0, 0, 7, 0].
        let w = Tensor::new(&[5.0f32, -6.0, 7.0, 8.0], &Device::Cpu).unwrap();
        let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 0.0, 7.0, 0.0]);
    }
}
