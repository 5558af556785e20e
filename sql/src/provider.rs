//! [`OmenTable`]: one engine table as a DataFusion `TableProvider`.

use crate::error::external;
use crate::keys::KeySet;
use crate::scan::{AccessPath, OmenScanExec};
use crate::write::{DmlExec, DmlOp, InsertSink};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{not_impl_err, Constraint, Constraints, Result, Statistics};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{provider_as_source, TableProvider, TableType};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    cast, Expr, LogicalPlanBuilder, Operator, TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;
use omendb::{ColumnRange, DataType, Database, TableDef};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// One OmenDB table seen by DataFusion: its schema comes from the engine's definition, its
/// scans pick an [`AccessPath`] from the key filters, and its writes go to the engine.
#[derive(Debug)]
pub struct OmenTable {
    db: Arc<Database>,
    def: TableDef,
    schema: SchemaRef,
    constraints: Constraints,
}

impl OmenTable {
    /// The provider of `table` as it is defined now.
    pub fn new(db: Arc<Database>, table: &str) -> omendb::Result<OmenTable> {
        let def = db.table_def(table)?;
        let schema = db.arrow_schema(table)?;
        let constraints =
            Constraints::new_unverified(vec![Constraint::PrimaryKey(
                vec![def.primary_key_index()],
            )]);
        Ok(OmenTable {
            db,
            def,
            schema,
            constraints,
        })
    }

    fn key(&self) -> &str {
        &self.def.columns()[self.def.primary_key_index()].name
    }

    /// The keys the filters admit together (those of them [`KeySet::of`] reads exactly).
    fn keys(&self, filters: &[Expr]) -> KeySet {
        filters
            .iter()
            .filter_map(|filter| KeySet::of(filter, self.key()))
            .fold(KeySet::ALL, |keys, more| keys.intersect(&more))
    }

    /// The values `filter` admits in one non-key Int64 or Timestamp column, if it constrains
    /// only that column with literals (the shapes [`KeySet::of`] reads): the scan skips cold
    /// row groups whose statistics rule them out, and DataFusion still applies the filter
    /// (`Inexact`). A filter with `IS NULL` is not used: `KeySet` reads it as "no key", which
    /// holds for the key but not for a nullable column.
    fn column_values(&self, filter: &Expr) -> Option<(String, KeySet)> {
        if has_is_null(filter) {
            return None;
        }
        let key = self.def.primary_key_index();
        self.def
            .columns()
            .iter()
            .enumerate()
            .filter(|&(i, c)| {
                i != key && matches!(c.data_type, DataType::Int64 | DataType::Timestamp)
            })
            .find_map(|(_, c)| Some((c.name.clone(), KeySet::of(filter, &c.name)?)))
    }

    /// One [`ColumnRange`] per column the filters constrain (conjuncts on the same column
    /// intersected: DataFusion hands `v BETWEEN a AND b` over as `v >= a` and `v <= b`).
    fn column_ranges(&self, filters: &[Expr]) -> Vec<ColumnRange> {
        let mut by_column: BTreeMap<String, KeySet> = BTreeMap::new();
        for (column, values) in filters.iter().filter_map(|f| self.column_values(f)) {
            let values = match by_column.get(&column) {
                Some(before) => before.intersect(&values),
                None => values,
            };
            by_column.insert(column, values);
        }
        by_column
            .into_iter()
            .map(|(column, values)| {
                let (low, high) = match values {
                    KeySet::Range(low, high) => (low, high),
                    KeySet::Points(points) => match (points.first(), points.last()) {
                        (Some(&first), Some(&last)) => {
                            (Bound::Included(first), Bound::Included(last))
                        }
                        // No value matches: a range no statistics overlap.
                        _ => (Bound::Excluded(i64::MAX), Bound::Unbounded),
                    },
                };
                ColumnRange { column, low, high }
            })
            .collect()
    }

    /// A plan of the rows the filters select, with `exprs` as its columns: the input of
    /// `DELETE` and `UPDATE`, planned with the same access paths as a query.
    async fn select(
        self: &Arc<Self>,
        state: &dyn Session,
        filters: Vec<Expr>,
        exprs: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source = provider_as_source(self.clone() as Arc<dyn TableProvider>);
        let mut builder = LogicalPlanBuilder::scan(self.def.name(), source, None)?;
        if let Some(predicate) = conjunction(filters) {
            builder = builder.filter(predicate)?;
        }
        let plan = builder.project(exprs)?.build()?;
        state.create_physical_plan(&plan).await
    }

    fn shared(&self) -> Arc<OmenTable> {
        Arc::new(OmenTable {
            db: self.db.clone(),
            def: self.def.clone(),
            schema: self.schema.clone(),
            constraints: self.constraints.clone(),
        })
    }
}

#[async_trait]
impl TableProvider for OmenTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if KeySet::of(filter, self.key()).is_some() {
                    TableProviderFilterPushDown::Exact
                } else if self.column_values(filter).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        let rows = self.db.row_count(self.def.name()).ok()?;
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Inexact(rows);
        Some(stats)
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => self.schema.clone(),
        };
        let path = AccessPath::for_keys(self.keys(filters));
        let rows_estimate = match path {
            AccessPath::Full => self.db.row_count(self.def.name()).ok(),
            _ => None,
        };
        let ranges = match path {
            AccessPath::Point(_) => Vec::new(),
            _ => self.column_ranges(filters),
        };
        Ok(Arc::new(
            OmenScanExec::new(
                self.db.clone(),
                self.def.name().to_string(),
                path,
                schema,
                self.key(),
                limit,
                rows_estimate,
            )
            .with_ranges(ranges),
        ))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!(
                "{insert_op} into an OmenDB table; INSERT adds rows, UPDATE changes them"
            );
        }
        // The sink admits NULLs everywhere so the engine checks NOT NULL and names the
        // column (DataFusion's own check names only a position).
        let sink = InsertSink::new(self.db.clone(), self.def.clone(), nullable(&self.schema));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = self
            .shared()
            .select(state, filters, vec![column(self.key())])
            .await?;
        Ok(Arc::new(DmlExec::new(
            self.db.clone(),
            self.def.clone(),
            DmlOp::Delete,
            input,
        )))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        for (name, _) in &assignments {
            self.def.column_index(name).map_err(external)?;
            if name == self.key() {
                return Err(crate::error::unsupported(format!(
                    "UPDATE cannot change the primary key {name:?}; DELETE the row and \
                     INSERT it with the new key"
                )));
            }
        }
        // Every column of the new row, in order: the assigned expression (cast to the
        // column's type) or the column itself.
        let exprs: Vec<Expr> = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                match assignments.iter().find(|(name, _)| name == field.name()) {
                    Some((_, expr)) => cast(expr.clone(), field.data_type().clone()),
                    None => column(field.name()),
                }
                .alias(field.name())
            })
            .collect();
        let input = self.shared().select(state, filters, exprs).await?;
        Ok(Arc::new(DmlExec::new(
            self.db.clone(),
            self.def.clone(),
            DmlOp::Update,
            input,
        )))
    }
}

/// `schema` with every field nullable.
pub(crate) fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|field| field.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// A reference to the column `name` (taken whole: a name with a dot is not a qualifier).
fn column(name: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new_unqualified(name))
}

/// Whether `filter` tests a column for NULL anywhere [`KeySet::of`] looks.
fn has_is_null(filter: &Expr) -> bool {
    match filter {
        Expr::IsNull(_) => true,
        Expr::BinaryExpr(b) if matches!(b.op, Operator::And | Operator::Or) => {
            has_is_null(&b.left) || has_is_null(&b.right)
        }
        _ => false,
    }
}
