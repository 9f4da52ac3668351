//! A condition compiled for evaluation: its comparisons in a flat list, each with the step to
//! go to when it holds and when it does not. `and`, `or` and `not` become that wiring, so
//! evaluating a condition is a loop over the comparisons it needs, short-circuiting as the tree
//! would, without recursing through the tree's nodes (which cost more than the comparisons).

use vigil_models::FeatureVector;

use super::expr::{Comparison, Expr};
use crate::event::Event;

/// A step target that ends the evaluation: the condition holds.
const HOLDS: u32 = u32::MAX;
/// A step target that ends the evaluation: the condition does not hold.
const FAILS: u32 = u32::MAX - 1;

#[derive(Debug, Clone)]
struct Step {
    comparison: Comparison,
    on_true: u32,
    on_false: u32,
}

#[derive(Debug, Clone)]
pub struct Condition {
    steps: Vec<Step>,
    entry: u32,
}

impl Condition {
    pub fn compile(expr: &Expr) -> Self {
        let mut steps = vec![];
        let entry = emit(expr, HOLDS, FAILS, &mut steps);
        Self { steps, entry }
    }

    pub fn eval(&self, x: &FeatureVector, e: &Event) -> bool {
        let mut at = self.entry;
        loop {
            match at {
                HOLDS => return true,
                FAILS => return false,
                _ => {
                    let step = &self.steps[at as usize];
                    at = if step.comparison.holds(x, e) {
                        step.on_true
                    } else {
                        step.on_false
                    };
                }
            }
        }
    }
}

/// Emits the steps of `expr`, which continues at `on_true` or `on_false`, and returns where it
/// starts. Children are emitted last to first, so that each knows where the next one starts.
fn emit(expr: &Expr, on_true: u32, on_false: u32, steps: &mut Vec<Step>) -> u32 {
    match expr {
        Expr::All(children) => children
            .iter()
            .rev()
            .fold(on_true, |next, c| emit(c, next, on_false, steps)),
        Expr::Any(children) => children
            .iter()
            .rev()
            .fold(on_false, |next, c| emit(c, on_true, next, steps)),
        Expr::Not(inner) => emit(inner, on_false, on_true, steps),
        Expr::Comparison(comparison) => {
            steps.push(Step {
                comparison: comparison.clone(),
                on_true,
                on_false,
            });
            // A condition has far fewer than 2^32 - 2 comparisons: its text would not fit in
            // memory otherwise.
            (steps.len() - 1) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::expr::tests::event;
    use crate::rules::expr::{Field, Op, Operand};
    use proptest::prelude::*;
    use vigil_schema::Country;

    /// Comparisons over the first four features (values or missing) and the country.
    fn comparison() -> impl Strategy<Value = Comparison> {
        let op = prop_oneof![
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge),
            Just(Op::Eq),
            Just(Op::Ne),
        ];
        let right = prop_oneof![
            (0u16..4).prop_map(Operand::Feature),
            (0u8..4).prop_map(|n| Operand::Number(f32::from(n))),
        ];
        let countries = prop::collection::vec(prop_oneof![Just("DE"), Just("NG")], 1..3);
        prop_oneof![
            (0u16..4, op, right).prop_map(|(feature, op, right)| Comparison::Feature {
                feature,
                op,
                right,
            }),
            (countries, any::<bool>()).prop_map(|(codes, negate)| Comparison::Field {
                field: Field::Country,
                values: codes
                    .iter()
                    .map(|c| u32::from(Country::parse(c).unwrap().code()))
                    .collect(),
                negate,
            }),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        comparison()
            .prop_map(Expr::Comparison)
            .prop_recursive(5, 48, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::All),
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::Any),
                    inner.prop_map(|e| Expr::Not(Box::new(e))),
                ]
            })
    }

    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![(0u8..4).prop_map(f32::from), Just(f32::NAN)]
    }

    proptest! {
        #[test]
        fn compiled_conditions_agree_with_the_tree(
            expr in expr(),
            values in prop::array::uniform4(value()),
            country in prop_oneof![Just(None), Just(Some("DE")), Just(Some("NG")), Just(Some("US"))],
        ) {
            let mut x = FeatureVector::default();
            x.0[..4].copy_from_slice(&values);
            let e = event(country);
            prop_assert_eq!(Condition::compile(&expr).eval(&x, &e), expr.eval(&x, &e));
        }
    }
}
