//! The operations of a network, named once: activations, error functions, optimizers and
//! weight-initialisation schemes.
//!
//! The numeric values of each `#[repr(u32)]` enum are DSSTNE's (`NNTypes.h`), so they can be
//! stored in and read from DSSTNE-format model files unchanged. Name parsing is
//! case-insensitive and accepts every spelling DSSTNE's JSON parser accepts.

pub mod activation;
pub mod fixed;
pub mod init;
pub mod loss;
pub mod math;
pub mod norm;
pub mod optimizer;
pub mod variational;

pub use activation::ActivationParams;
pub use init::Distribution;
pub use loss::{DeltaBoost, LossSpec, SmceParams};
pub use optimizer::{Hyper, LrSchedule};

/// Whether an operand enters a matrix product as stored or transposed (`op(M) = M` or `Mᵀ`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// As stored.
    No,
    /// Transposed.
    Yes,
}

/// Generates `from_name`, `name` and `ALL` for a fieldless enum.
macro_rules! named_enum {
    ($ty:ident { $($variant:ident = [$canonical:literal $(, $alias:literal)*]),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// Parses a name case-insensitively, accepting every DSSTNE spelling.
            pub fn from_name(name: &str) -> Option<Self> {
                $(
                    if name.eq_ignore_ascii_case($canonical)
                        $(|| name.eq_ignore_ascii_case($alias))* {
                        return Some($ty::$variant);
                    }
                )+
                None
            }

            /// The canonical (DSSTNE) name.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $canonical),+
                }
            }

            /// Every accepted spelling, canonical names first (for error messages).
            pub fn accepted_names() -> &'static [&'static str] {
                &[$($canonical, $($alias,)*)+]
            }

            /// The variant with DSSTNE's numeric value `value`.
            pub fn from_u32(value: u32) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| *v as u32 == value)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use named_enum;

/// A unit's activation function (DSSTNE `enum Activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Activation {
    Sigmoid = 0,
    Tanh = 1,
    RectifiedLinear = 2,
    Linear = 3,
    ParametricRectifiedLinear = 4,
    SoftPlus = 5,
    SoftSign = 6,
    SoftMax = 7,
    ReluMax = 8,
    LinearMax = 9,
    ExponentialLinear = 10,
    LeakyRectifiedLinear = 11,
    ScaledExponentialLinear = 12,
}

named_enum!(Activation {
    Sigmoid = ["Sigmoid"],
    Tanh = ["Tanh"],
    RectifiedLinear = ["RectifiedLinear", "Relu"],
    Linear = ["Linear"],
    ParametricRectifiedLinear = ["ParametricRectifiedLinear"],
    SoftPlus = ["SoftPlus"],
    SoftSign = ["SoftSign"],
    SoftMax = ["SoftMax"],
    ReluMax = ["ReluMax"],
    LinearMax = ["LinearMax"],
    ExponentialLinear = ["ExponentialLinear", "Elu"],
    LeakyRectifiedLinear = ["LeakyRectifiedLinear", "LRelu"],
    ScaledExponentialLinear = ["ScaledExponentialLinear", "Selu"],
});

/// The error (loss) function of an output layer (DSSTNE `enum ErrorFunction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorFunction {
    L1 = 0,
    L2 = 1,
    CrossEntropy = 2,
    ScaledMarginalCrossEntropy = 3,
    DataScaledMarginalCrossEntropy = 4,
    Hinge = 5,
    L2Hinge = 6,
}

named_enum!(ErrorFunction {
    L1 = ["L1"],
    L2 = ["L2"],
    CrossEntropy = ["CrossEntropy", "Cross Entropy"],
    ScaledMarginalCrossEntropy = ["ScaledMarginalCrossEntropy"],
    DataScaledMarginalCrossEntropy = ["DataScaledMarginalCrossEntropy"],
    Hinge = ["Hinge"],
    L2Hinge = ["L2Hinge"],
});

/// The weight-update rule (DSSTNE `enum TrainingMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Optimizer {
    Sgd = 0,
    Momentum = 1,
    AdaGrad = 2,
    Nesterov = 3,
    RmsProp = 4,
    AdaDelta = 5,
    Adam = 6,
}

named_enum!(Optimizer {
    Sgd = ["SGD"],
    Momentum = ["Momentum"],
    AdaGrad = ["AdaGrad"],
    Nesterov = ["Nesterov"],
    RmsProp = ["RMSProp"],
    AdaDelta = ["AdaDelta"],
    Adam = ["Adam"],
});

/// How a weight matrix is initialised (DSSTNE `enum WeightInitialization`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum WeightInitScheme {
    Xavier = 0,
    CaffeXavier = 1,
    Gaussian = 2,
    Uniform = 3,
    UnitBall = 4,
    Constant = 5,
    Selu = 6,
}

named_enum!(WeightInitScheme {
    Xavier = ["Xavier"],
    CaffeXavier = ["CaffeXavier"],
    Gaussian = ["Gaussian"],
    Uniform = ["Uniform"],
    UnitBall = ["UnitBall"],
    Constant = ["Constant"],
    Selu = ["SELU"],
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_with_aliases() {
        assert_eq!(
            Activation::from_name("relu"),
            Some(Activation::RectifiedLinear)
        );
        assert_eq!(
            Activation::from_name("LRELU"),
            Some(Activation::LeakyRectifiedLinear)
        );
        assert_eq!(Activation::from_name("softmax"), Some(Activation::SoftMax));
        assert_eq!(Activation::from_name("PRelu"), None);
        assert_eq!(
            ErrorFunction::from_name("cross entropy"),
            Some(ErrorFunction::CrossEntropy)
        );
        assert_eq!(ErrorFunction::from_name("SMCE"), None);
        assert_eq!(Optimizer::from_name("rmsprop"), Some(Optimizer::RmsProp));
        assert_eq!(
            WeightInitScheme::from_name("selu"),
            Some(WeightInitScheme::Selu)
        );
    }

    #[test]
    fn numeric_values_round_trip() {
        for &a in Activation::ALL {
            assert_eq!(Activation::from_u32(a as u32), Some(a));
        }
        assert_eq!(ErrorFunction::L2Hinge as u32, 6);
        assert_eq!(Optimizer::from_u32(6), Some(Optimizer::Adam));
    }
}
