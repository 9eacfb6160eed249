//! DSSTNE's divergence brake (`NNNetwork::Train`).
//!
//! Per minibatch, with `e` its error: `m ← 0.9·m + 0.1·e` (`m` starts at 0). During the first
//! [`Brake::WARMUP`] minibatches nothing else happens. Afterwards, when `e > 2·m` (with the
//! `m` just updated, that is `e > 2.25·m_prev`) the network is taken to be diverging: the
//! next [`Brake::BATCHES`] minibatches, this one included, train at `α ×`
//! [`Brake::FACTOR`], and this first braked minibatch applies no update at all. A new
//! detection while braking restarts the count.
//!
//! Differences from DSSTNE, on purpose:
//! - `e` is the minibatch's *mean* loss per example (DSSTNE: the sum), so a smaller last
//!   minibatch does not look like an improvement;
//! - the state lives for the whole run and is saved in checkpoints, where DSSTNE keeps it in
//!   one `Train()` call, and its `train` tool calls `Train()` once per epoch: there the
//!   warm-up restarts every epoch (and with fewer than 100 minibatches per epoch the brake
//!   never engages).

/// The brake's state. [`Brake::default`] is the state at the start of training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Brake {
    /// The moving average `m` of the minibatch error.
    pub moving_average: f64,
    /// Minibatches of warm-up still to go.
    pub warmup_left: u32,
    /// Braked minibatches still to go.
    pub braking_left: u32,
}

impl Default for Brake {
    fn default() -> Self {
        Brake {
            moving_average: 0.0,
            warmup_left: Brake::WARMUP,
            braking_left: 0,
        }
    }
}

/// What the brake decided for one minibatch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrakeStep {
    /// Factor of the learning rate: 1 or [`Brake::FACTOR`].
    pub alpha_scale: f32,
    /// Whether to apply the update (false only on the first braked minibatch).
    pub update: bool,
    /// Whether divergence was detected on this minibatch.
    pub detected: bool,
}

impl Brake {
    /// Minibatches before the brake can engage (DSSTNE's `init_steps`).
    pub const WARMUP: u32 = 100;
    /// Minibatches a detection brakes (DSSTNE's `brake_steps`).
    pub const BATCHES: u32 = 25;
    /// The learning-rate factor while braking.
    pub const FACTOR: f32 = 0.1;

    /// Feeds the error (mean loss per example) of the minibatch about to be applied and
    /// returns how to apply it. A non-finite `error` is not guarded here (the training loop
    /// stops on it first).
    pub fn observe(&mut self, error: f64) -> BrakeStep {
        self.moving_average = 0.9 * self.moving_average + 0.1 * error;
        let mut detected = false;
        if self.warmup_left == 0 {
            if error > 2.0 * self.moving_average {
                self.braking_left = Brake::BATCHES;
                detected = true;
            }
        } else {
            self.warmup_left -= 1;
        }
        let mut alpha_scale = 1.0;
        if self.braking_left > 0 {
            alpha_scale = Brake::FACTOR;
            self.braking_left -= 1;
        }
        BrakeStep {
            alpha_scale,
            update: self.braking_left < Brake::BATCHES - 1,
            detected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL: BrakeStep = BrakeStep {
        alpha_scale: 1.0,
        update: true,
        detected: false,
    };

    #[test]
    fn a_spike_after_warm_up_brakes_25_batches_at_a_tenth() {
        let mut b = Brake::default();
        for _ in 0..Brake::WARMUP {
            assert_eq!(b.observe(1.0), NORMAL);
        }
        for _ in 0..50 {
            assert_eq!(b.observe(1.0), NORMAL);
        }
        assert!((b.moving_average - 1.0).abs() < 1e-4);
        // m ≈ 1: 2.2 stays under 2·(0.9 + 0.22) = 2.24; 2.3 exceeds 2·(0.9 + 0.23) = 2.26.
        let mut b2 = b;
        assert_eq!(b.observe(2.2), NORMAL);
        let first = b2.observe(2.3);
        assert_eq!(
            first,
            BrakeStep {
                alpha_scale: 0.1,
                update: false,
                detected: true
            }
        );
        for i in 1..Brake::BATCHES {
            let s = b2.observe(1.0);
            assert_eq!(
                (s.alpha_scale, s.update, s.detected),
                (0.1, true, false),
                "{i}"
            );
        }
        assert_eq!(b2.observe(1.0), NORMAL, "after 25 braked batches");
    }

    #[test]
    fn no_brake_during_warm_up_and_a_new_spike_restarts_the_count() {
        let mut b = Brake::default();
        // The moving average starts at 0: every early error is "twice the average".
        for _ in 0..Brake::WARMUP {
            assert_eq!(b.observe(5.0), NORMAL);
        }
        assert_eq!(b.warmup_left, 0);
        for _ in 0..100 {
            b.observe(1.0);
        }
        assert!(b.observe(10.0).detected);
        for _ in 0..10 {
            assert_eq!(b.observe(1.0).alpha_scale, 0.1);
        }
        // Detected again: the count restarts, and that batch skips its update too.
        let again = b.observe(100.0);
        assert!(again.detected && !again.update);
        assert_eq!(b.braking_left, Brake::BATCHES - 1);
        let braked = (0..40)
            .map(|_| b.observe(1.0))
            .filter(|s| s.alpha_scale < 1.0)
            .count();
        assert_eq!(braked, Brake::BATCHES as usize - 1);
    }
}
