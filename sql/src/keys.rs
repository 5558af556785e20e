//! Which primary keys a filter admits, when the filter says so exactly.
//!
//! [`KeySet::of`] reads one filter conjunct over a table's columns and returns the keys it
//! admits if it constrains only the primary key with literals: `k = c`, `k <> ...` is not
//! one, `k IN (c, ...)`, `k BETWEEN a AND b`, comparisons either way round, `k IS NULL`
//! (no key is NULL), and `AND` / `OR` of those where the result is still one range or a set
//! of points. Anything else is `None` and stays DataFusion's to evaluate. What a `Some`
//! says is exact: the table then applies the filter itself and DataFusion drops it.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use std::ops::Bound;

/// The primary keys a filter admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySet {
    /// The keys in a range.
    Range(Bound<i64>, Bound<i64>),
    /// These keys, ascending, without repeats (possibly none).
    Points(Vec<i64>),
}

impl KeySet {
    /// Every key.
    pub const ALL: KeySet = KeySet::Range(Bound::Unbounded, Bound::Unbounded);

    /// The keys `filter` admits, if it constrains only the column `key` (of the table's
    /// primary key) and says exactly which keys.
    pub fn of(filter: &Expr, key: &str) -> Option<KeySet> {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And => Some(KeySet::of(left, key)?.intersect(&KeySet::of(right, key)?)),
                Operator::Or => KeySet::of(left, key)?.union(&KeySet::of(right, key)?),
                _ => {
                    let (op, value) = if is_key(left, key) {
                        (*op, literal(right)?)
                    } else if is_key(right, key) {
                        (op.swap()?, literal(left)?)
                    } else {
                        return None;
                    };
                    // A comparison with NULL is never true.
                    let Some(value) = value else {
                        return Some(KeySet::Points(Vec::new()));
                    };
                    comparison(op, value)
                }
            },
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_key(expr, key) => match (literal(low)?, literal(high)?) {
                (Some(low), Some(high)) => {
                    Some(KeySet::Range(Bound::Included(low), Bound::Included(high)).normalized())
                }
                _ => Some(KeySet::Points(Vec::new())),
            },
            Expr::InList(list) if !list.negated && is_key(&list.expr, key) => {
                let mut points = Vec::with_capacity(list.list.len());
                for item in &list.list {
                    if let Some(value) = literal(item)? {
                        points.push(value);
                    }
                }
                points.sort_unstable();
                points.dedup();
                Some(KeySet::Points(points))
            }
            Expr::IsNull(inner) if is_key(inner, key) => Some(KeySet::Points(Vec::new())),
            _ => None,
        }
    }

    /// The keys in both.
    pub fn intersect(&self, other: &KeySet) -> KeySet {
        match (self, other) {
            (KeySet::Points(a), KeySet::Points(b)) => KeySet::Points(
                a.iter()
                    .copied()
                    .filter(|k| b.binary_search(k).is_ok())
                    .collect(),
            ),
            (KeySet::Points(points), range @ KeySet::Range(..))
            | (range @ KeySet::Range(..), KeySet::Points(points)) => KeySet::Points(
                points
                    .iter()
                    .copied()
                    .filter(|k| range.contains(*k))
                    .collect(),
            ),
            (KeySet::Range(a_low, a_high), KeySet::Range(b_low, b_high)) => KeySet::Range(
                tighter_lower(*a_low, *b_low),
                tighter_upper(*a_high, *b_high),
            )
            .normalized(),
        }
    }

    /// The keys in either, if that is still one `KeySet`.
    pub fn union(&self, other: &KeySet) -> Option<KeySet> {
        match (self, other) {
            (KeySet::Points(a), KeySet::Points(b)) => {
                let mut points: Vec<i64> = a.iter().chain(b).copied().collect();
                points.sort_unstable();
                points.dedup();
                Some(KeySet::Points(points))
            }
            (KeySet::Points(points), range) | (range, KeySet::Points(points))
                if points.iter().all(|k| range.contains(*k)) =>
            {
                Some(range.clone())
            }
            _ => None,
        }
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: i64) -> bool {
        match self {
            KeySet::Points(points) => points.binary_search(&key).is_ok(),
            KeySet::Range(low, high) => {
                let above = match low {
                    Bound::Included(l) => key >= *l,
                    Bound::Excluded(l) => key > *l,
                    Bound::Unbounded => true,
                };
                let below = match high {
                    Bound::Included(h) => key <= *h,
                    Bound::Excluded(h) => key < *h,
                    Bound::Unbounded => true,
                };
                above && below
            }
        }
    }

    /// An empty range as no points; an inclusive range of one key as that point.
    fn normalized(self) -> KeySet {
        let KeySet::Range(low, high) = self else {
            return self;
        };
        let first = match low {
            Bound::Included(l) => Some(l),
            Bound::Excluded(l) => l.checked_add(1),
            Bound::Unbounded => Some(i64::MIN),
        };
        let last = match high {
            Bound::Included(h) => Some(h),
            Bound::Excluded(h) => h.checked_sub(1),
            Bound::Unbounded => Some(i64::MAX),
        };
        match (first, last) {
            (Some(first), Some(last)) if first < last => KeySet::Range(low, high),
            (Some(first), Some(last)) if first == last => KeySet::Points(vec![first]),
            _ => KeySet::Points(Vec::new()),
        }
    }
}

fn comparison(op: Operator, value: i64) -> Option<KeySet> {
    let set = match op {
        Operator::Eq => KeySet::Points(vec![value]),
        Operator::Lt => KeySet::Range(Bound::Unbounded, Bound::Excluded(value)),
        Operator::LtEq => KeySet::Range(Bound::Unbounded, Bound::Included(value)),
        Operator::Gt => KeySet::Range(Bound::Excluded(value), Bound::Unbounded),
        Operator::GtEq => KeySet::Range(Bound::Included(value), Bound::Unbounded),
        _ => return None,
    };
    Some(set.normalized())
}

fn tighter_lower(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i > e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

fn tighter_upper(a: Bound<i64>, b: Bound<i64>) -> Bound<i64> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i < e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

fn is_key(expr: &Expr, key: &str) -> bool {
    matches!(expr, Expr::Column(column) if column.name == key)
}

/// A literal as a key: `Some(None)` for NULL, `None` if it is not a literal or has no
/// exact Int64 value (a float, a timestamp of another unit, a string).
fn literal(expr: &Expr) -> Option<Option<i64>> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    if value.is_null() {
        return Some(None);
    }
    let key = match value {
        ScalarValue::Int64(Some(v)) | ScalarValue::TimestampMicrosecond(Some(v), _) => *v,
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::Int16(Some(v)) => i64::from(*v),
        ScalarValue::Int8(Some(v)) => i64::from(*v),
        ScalarValue::UInt32(Some(v)) => i64::from(*v),
        ScalarValue::UInt16(Some(v)) => i64::from(*v),
        ScalarValue::UInt8(Some(v)) => i64::from(*v),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok()?,
        _ => return None,
    };
    Some(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::Expr as E;

    fn of(expr: E) -> Option<KeySet> {
        KeySet::of(&expr, "k")
    }

    #[test]
    fn equality_and_in_lists_are_points() {
        assert_eq!(of(col("k").eq(lit(5i64))), Some(KeySet::Points(vec![5])));
        assert_eq!(of(lit(5i64).eq(col("k"))), Some(KeySet::Points(vec![5])));
        assert_eq!(
            of(col("k").in_list(vec![lit(9i64), lit(3i64), lit(9i64)], false)),
            Some(KeySet::Points(vec![3, 9]))
        );
        assert_eq!(
            of(col("k").eq(lit(1i64)).or(col("k").eq(lit(2i64)))),
            Some(KeySet::Points(vec![1, 2]))
        );
    }

    #[test]
    fn comparisons_make_ranges_and_conjunctions_tighten_them() {
        assert_eq!(
            of(col("k").between(lit(10i64), lit(20i64))),
            Some(KeySet::Range(Bound::Included(10), Bound::Included(20)))
        );
        assert_eq!(
            of(col("k").gt(lit(10i64)).and(col("k").lt_eq(lit(20i64)))),
            Some(KeySet::Range(Bound::Excluded(10), Bound::Included(20)))
        );
        // Flipped: 10 < k is k > 10.
        assert_eq!(
            of(lit(10i64).lt(col("k"))),
            Some(KeySet::Range(Bound::Excluded(10), Bound::Unbounded))
        );
        assert_eq!(
            of(col("k").gt(lit(20i64)).and(col("k").lt(lit(10i64)))),
            Some(KeySet::Points(vec![]))
        );
    }

    #[test]
    fn ranges_at_the_ends_of_i64_do_not_overflow() {
        assert_eq!(of(col("k").gt(lit(i64::MAX))), Some(KeySet::Points(vec![])));
        assert_eq!(of(col("k").lt(lit(i64::MIN))), Some(KeySet::Points(vec![])));
        assert_eq!(
            of(col("k").gt_eq(lit(i64::MAX))),
            Some(KeySet::Points(vec![i64::MAX]))
        );
        assert_eq!(
            of(col("k").lt_eq(lit(i64::MIN))),
            Some(KeySet::Points(vec![i64::MIN]))
        );
    }

    #[test]
    fn nulls_admit_no_key() {
        assert_eq!(
            of(col("k").eq(lit(ScalarValue::Int64(None)))),
            Some(KeySet::Points(vec![]))
        );
        assert_eq!(of(col("k").is_null()), Some(KeySet::Points(vec![])));
    }

    #[test]
    fn anything_else_is_left_to_datafusion() {
        assert_eq!(of(col("v").eq(lit(5i64))), None);
        assert_eq!(of(col("k").not_eq(lit(5i64))), None);
        assert_eq!(of(col("k").eq(lit(5i64)).or(col("v").eq(lit(1i64)))), None);
        assert_eq!(of(col("k").eq(lit(1.5f64))), None);
        assert_eq!(of(!col("k").between(lit(1i64), lit(5i64))), None);
        // Two disjoint ranges are not one range.
        assert_eq!(of(col("k").lt(lit(1i64)).or(col("k").gt(lit(5i64)))), None);
    }
}
