//! [`SqlSession`]: a DataFusion session over one OmenDB database.

use crate::error::{external, Error, Result};
use crate::provider::OmenTable;
use crate::types::engine_type;
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Constraint, DFSchema, TableReference};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{
    CreateMemoryTable, DdlStatement, DmlStatement, DropTable, LogicalPlan, Values, WriteOp,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use omendb::{Column, Database, TableDef};
use std::sync::Arc;

/// The catalog and schema names tables are found under (`omendb.public.t`, or just `t`).
pub const CATALOG: &str = "omendb";
/// See [`CATALOG`].
pub const SCHEMA: &str = "public";

/// A SQL session over a database: parse, plan and run statements with DataFusion, every
/// table of the database in scope.
pub struct SqlSession {
    db: Arc<Database>,
    ctx: SessionContext,
}

impl SqlSession {
    /// A session over `db`, with DataFusion's default configuration (one partition per
    /// core) and `information_schema` on (`SHOW TABLES`, `SHOW COLUMNS FROM t`).
    pub fn new(db: Arc<Database>) -> Result<SqlSession> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, SCHEMA);
        SqlSession::with_config(db, config)
    }

    /// A session over `db` with DataFusion configuration `config` (its default catalog and
    /// schema are set to OmenDB's).
    pub fn with_config(db: Arc<Database>, config: SessionConfig) -> Result<SqlSession> {
        let config = config.with_default_catalog_and_schema(CATALOG, SCHEMA);
        let ctx = SessionContext::new_with_config(config);
        let catalog = MemoryCatalogProvider::new();
        datafusion::catalog::CatalogProvider::register_schema(
            &catalog,
            SCHEMA,
            Arc::new(EngineSchema { db: db.clone() }),
        )?;
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        Ok(SqlSession { db, ctx })
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// DataFusion's context, for registering functions or other tables.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs the statements in `sql` (separated by `;`) in order and returns the rows of the
    /// last. A statement that fails stops the rest; those before it stay applied.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql_each(sql).await?.pop().unwrap_or_default())
    }

    /// Runs the statements in `sql` in order and returns the rows of each.
    pub async fn sql_each(&self, sql: &str) -> Result<Vec<Vec<RecordBatch>>> {
        let mut results = Vec::new();
        for statement in parse(sql)? {
            let stream = self.execute(statement).await?;
            results.push(datafusion::physical_plan::common::collect(stream).await?);
        }
        Ok(results)
    }

    /// Runs the one statement in `sql` and returns its rows as a stream.
    pub async fn sql_stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let mut statements = parse(sql)?;
        if statements.len() != 1 {
            return Err(Error::Unsupported(format!(
                "sql_stream runs one statement; {} given",
                statements.len()
            )));
        }
        let statement = statements.remove(0);
        self.execute(statement).await
    }

    /// Plans and starts one statement: DDL goes to the engine's catalog, the rest to
    /// DataFusion (whose tables are this database's).
    async fn execute(&self, statement: Statement) -> Result<SendableRecordBatchStream> {
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                self.create_table(create)?;
                return Ok(empty());
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
                self.drop_table(drop)?;
                return Ok(empty());
            }
            LogicalPlan::Ddl(other) => {
                return Err(Error::Unsupported(format!(
                    "{}; OmenDB's SQL has CREATE TABLE and DROP TABLE",
                    other.name()
                )))
            }
            LogicalPlan::Statement(statement) => {
                return Err(Error::Unsupported(format!(
                    "{}; each statement commits on its own",
                    statement.name()
                )))
            }
            LogicalPlan::Dml(DmlStatement {
                op: WriteOp::Update,
                input,
                ..
            }) if input.exists(|node| Ok(matches!(node, LogicalPlan::Join(_))))? => {
                return Err(Error::Unsupported(
                    "UPDATE ... FROM another table; update by key, or with a WHERE on this \
                     table's columns"
                        .into(),
                ))
            }
            LogicalPlan::Dml(DmlStatement {
                op: WriteOp::Ctas | WriteOp::Truncate,
                ..
            }) => {
                return Err(Error::Unsupported(
                    "this write; OmenDB's SQL has INSERT, UPDATE and DELETE".into(),
                ))
            }
            _ => {}
        }
        let plan = match plan {
            LogicalPlan::Dml(DmlStatement {
                op: WriteOp::Insert(_),
                ..
            }) => nullable_values(plan)?,
            plan => plan,
        };
        let frame = self.ctx.execute_logical_plan(plan).await?;
        Ok(frame.execute_stream().await?)
    }

    fn create_table(&self, create: &CreateMemoryTable) -> Result<()> {
        let def = table_def(create)?;
        match self.db.create_table(def) {
            Err(omendb::Error::TableExists { .. }) if create.if_not_exists => Ok(()),
            other => Ok(other?),
        }
    }

    fn drop_table(&self, drop: &DropTable) -> Result<()> {
        let name = table_name(&drop.name)?;
        match self.db.drop_table(name) {
            Err(omendb::Error::TableNotFound { .. }) if drop.if_exists => Ok(()),
            other => Ok(other?),
        }
    }
}

/// `plan` (an INSERT) with its `VALUES` lists typed as nullable. DataFusion gives the
/// literals of `INSERT INTO t VALUES` the target columns' nullability, so a NULL for a NOT
/// NULL column fails while the batch is built, naming `column2`; typed as nullable, the row
/// reaches the engine, whose error names the table and the column.
fn nullable_values(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = plan.transform_up(|node| {
        Ok(match node {
            LogicalPlan::Values(values) => {
                let fields: Vec<_> = values
                    .schema
                    .iter()
                    .map(|(qualifier, field)| {
                        (
                            qualifier.cloned(),
                            Arc::new(field.as_ref().clone().with_nullable(true)),
                        )
                    })
                    .collect();
                let schema = DFSchema::new_with_metadata(fields, values.schema.metadata().clone())?;
                Transformed::yes(LogicalPlan::Values(Values {
                    schema: Arc::new(schema),
                    values: values.values,
                }))
            }
            other => Transformed::yes(other.recompute_schema()?),
        })
    })?;
    Ok(plan.data)
}

/// The statements of `sql`, in DataFusion's SQL dialect.
fn parse(sql: &str) -> Result<Vec<Statement>> {
    Ok(DFParser::parse_sql(sql)?.into_iter().collect())
}

fn empty() -> SendableRecordBatchStream {
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
    Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::empty(),
        ),
    )
}

/// The table a reference names, if it is in OmenDB's catalog and schema.
fn table_name(reference: &TableReference) -> Result<&str> {
    let ours = reference.catalog().is_none_or(|c| c == CATALOG)
        && reference.schema().is_none_or(|s| s == SCHEMA);
    if !ours {
        return Err(Error::Unsupported(format!(
            "table {reference}: OmenDB tables live in {CATALOG}.{SCHEMA}"
        )));
    }
    Ok(reference.table())
}

/// The engine definition of `CREATE TABLE name (...)`.
fn table_def(create: &CreateMemoryTable) -> Result<TableDef> {
    let name = table_name(&create.name)?;
    let refuse = |what: &str| Err(Error::Unsupported(format!("{what} (table {name:?})")));
    if !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(e) if !e.produce_one_row) {
        return refuse(
            "CREATE TABLE ... AS SELECT; create the table with its PRIMARY KEY, then INSERT \
             INTO it ... SELECT",
        );
    }
    if create.or_replace {
        return refuse("CREATE OR REPLACE TABLE; DROP TABLE, then CREATE TABLE");
    }
    if create.temporary {
        return refuse("CREATE TEMPORARY TABLE");
    }
    if !create.column_defaults.is_empty() {
        return refuse("DEFAULT values for columns");
    }
    let mut key = None;
    for constraint in create.constraints.iter() {
        match constraint {
            Constraint::PrimaryKey(columns) if columns.len() == 1 && key.is_none() => {
                key = Some(columns[0]);
            }
            Constraint::PrimaryKey(_) => {
                return refuse("a PRIMARY KEY of more than one column");
            }
            Constraint::Unique(columns) if columns.len() == 1 && key == Some(columns[0]) => {}
            Constraint::Unique(_) => {
                return refuse("UNIQUE on columns other than the primary key");
            }
        }
    }
    let Some(key) = key else {
        return refuse(
            "a table without a PRIMARY KEY; declare one BIGINT or TIMESTAMP column PRIMARY KEY",
        );
    };
    let schema = create.input.schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let mut column = Column::new(field.name(), engine_type(field)?);
        if i == key {
            column = column.primary_key();
        } else if field.is_nullable() {
            column = column.nullable();
        }
        columns.push(column);
    }
    Ok(TableDef::new(name, columns)?)
}

/// The engine's catalog as a DataFusion schema: tables are looked up when a query names
/// them, so a table created or dropped through the engine is seen by the next statement.
#[derive(Debug)]
struct EngineSchema {
    db: Arc<Database>,
}

#[async_trait]
impl SchemaProvider for EngineSchema {
    fn table_names(&self) -> Vec<String> {
        // The trait cannot fail here; a closed or poisoned database shows no tables, and
        // the statement that uses one gets the engine's error.
        self.db.table_names().unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        match OmenTable::new(self.db.clone(), name) {
            Ok(table) => Ok(Some(Arc::new(table))),
            Err(omendb::Error::TableNotFound { .. }) => Ok(None),
            Err(e) => Err(external(e)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.table_def(name).is_ok()
    }
}
