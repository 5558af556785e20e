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
use datafusion::logical_expr::{cast, Expr, LogicalPlanBuilder, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use omendb::{Database, TableDef};
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
            .map(|filter| match KeySet::of(filter, self.key()) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
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
        Ok(Arc::new(OmenScanExec::new(
            self.db.clone(),
            self.def.name().to_string(),
            path,
            schema,
            self.key(),
            limit,
            rows_estimate,
        )))
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
