//! Linear models: `position = slope * (key - base) + intercept`.
//!
//! Data nodes use a model to predict a slot; a wrong prediction only costs search time. Inner
//! nodes route with one, and there it is load-bearing: routing must be monotone in the key and
//! must not change for stored keys when the node is restructured. Monotone: the slope is never
//! negative and [`Key::offset_from`] is monotone. Stable: an inner node only ever rescales its
//! model by a power of two (exact in floating point) and shifts slots by an integer outside the
//! model, and [`floor_slot`] is a true floor, so `floor(2p) ∈ {2 floor(p), 2 floor(p) + 1}`.

use super::key::Key;

/// Predictions are clamped to this magnitude before flooring, so the conversion to an integer
/// is exact; fan-outs and capacities are far below it.
const PREDICTION_ABS_MAX: f64 = (1u64 << 52) as f64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LinearModel<K> {
    pub base: K,
    pub slope: f64,
    pub intercept: f64,
}

impl<K: Key> LinearModel<K> {
    /// The model that predicts position 0 for every key.
    pub fn flat() -> Self {
        LinearModel {
            base: K::MIN,
            slope: 0.0,
            intercept: 0.0,
        }
    }

    #[inline]
    pub fn predict(&self, key: K) -> f64 {
        self.slope * key.offset_from(self.base) + self.intercept
    }

    /// The same model with every prediction multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        LinearModel {
            base: self.base,
            slope: self.slope * factor,
            intercept: self.intercept * factor,
        }
    }

    /// Least-squares fit of rank (0, 1, 2, ...) against key over sorted `keys`, with a slope
    /// that is finite and never negative.
    pub fn fit_ranks(keys: &[K]) -> Self {
        let Some(&base) = keys.first() else {
            return Self::flat();
        };
        let count = keys.len() as f64;
        let mean_offset = keys.iter().map(|key| key.offset_from(base)).sum::<f64>() / count;
        let mean_rank = (count - 1.0) / 2.0;
        let mut covariance = 0.0;
        let mut variance = 0.0;
        for (rank, key) in keys.iter().enumerate() {
            let dx = key.offset_from(base) - mean_offset;
            covariance += dx * (rank as f64 - mean_rank);
            variance += dx * dx;
        }
        let slope = covariance / variance;
        let slope = if slope.is_finite() && slope > 0.0 {
            slope
        } else {
            0.0
        };
        let intercept = mean_rank - slope * mean_offset;
        LinearModel {
            base,
            slope,
            intercept: if intercept.is_finite() {
                intercept
            } else {
                0.0
            },
        }
    }

    /// A model mapping sorted `keys` into `[0, 1)`, separating the first key from the last one
    /// (`floor(2 * p)` differs), so a split by it always makes progress. Least squares when that
    /// separates them, else the line through the two end keys.
    pub fn fit_unit(keys: &[K]) -> Self {
        let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
            return Self::flat();
        };
        let fitted = Self::fit_ranks(keys).scaled(1.0 / keys.len() as f64);
        if floor_slot(fitted.predict(first) * 2.0) < floor_slot(fitted.predict(last) * 2.0) {
            return fitted;
        }
        let span = last.offset_from(first);
        let slope = (1.0 - 1.0 / (1u64 << 20) as f64) / span;
        LinearModel {
            base: first,
            slope: if slope.is_finite() && slope > 0.0 {
                slope
            } else {
                0.0
            },
            intercept: 0.0,
        }
    }
}

/// `floor(prediction)` as an integer (NaN gives 0; models never produce it).
#[inline]
pub(crate) fn floor_slot(prediction: f64) -> i64 {
    let clamped = prediction.clamp(-PREDICTION_ABS_MAX, PREDICTION_ABS_MAX);
    let truncated = clamped as i64;
    truncated - i64::from(clamped < truncated as f64)
}

/// The slot in `[0, slots)` for a prediction: truncated and clamped (NaN goes to 0).
#[inline]
pub(crate) fn clamp_slot(prediction: f64, slots: usize) -> usize {
    (prediction as usize).min(slots.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_a_floor() {
        assert_eq!(floor_slot(0.0), 0);
        assert_eq!(floor_slot(0.5), 0);
        assert_eq!(floor_slot(-0.5), -1);
        assert_eq!(floor_slot(-1.0), -1);
        assert_eq!(floor_slot(3.999), 3);
        assert_eq!(floor_slot(f64::NAN), 0);
        assert_eq!(floor_slot(f64::INFINITY), 1i64 << 52);
        for p in [-7.25f64, -3.5, -0.75, 0.25, 1.5, 1e9 + 0.5] {
            let f = floor_slot(p);
            assert!(floor_slot(2.0 * p) == 2 * f || floor_slot(2.0 * p) == 2 * f + 1);
        }
    }

    #[test]
    fn fits_are_monotone_and_separate_ends() {
        let keys: Vec<i64> = vec![i64::MIN, -5, 0, 7, i64::MAX];
        let unit = LinearModel::fit_unit(&keys);
        assert!(unit.slope >= 0.0);
        assert!(
            floor_slot(unit.predict(i64::MIN) * 2.0) < floor_slot(unit.predict(i64::MAX) * 2.0)
        );
        // A cluster with one far outlier: least squares lumps the cluster, still separates ends.
        let mut skewed: Vec<i64> = (0..1000).collect();
        skewed.push(i64::MAX);
        let unit = LinearModel::fit_unit(&skewed);
        assert!(floor_slot(unit.predict(0) * 2.0) < floor_slot(unit.predict(i64::MAX) * 2.0));
        assert_eq!(LinearModel::<i64>::fit_ranks(&[42]).slope, 0.0);
    }
}
