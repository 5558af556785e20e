//! Property test on a real disk: random sequences of table operations, with reopen and
//! checkpoint points, against a `BTreeMap` model. Results must be identical, step by step.

mod common;

use common::model_ops::{check_against_model, op, sync_mode};
use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_btreemap(ops in prop::collection::vec(op(), 1..60), sync in sync_mode()) {
        let dir = tempfile::tempdir().unwrap();
        check_against_model(ops, || open(dir.path(), sync))?;
    }
}
