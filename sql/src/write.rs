//! Writes from SQL: `INSERT` as a DataFusion data sink into one `insert_batch`, `DELETE`
//! and `UPDATE` as a plan node that applies the rows its input selects.

use crate::error::{external, unsupported};
use crate::types::batch_to_rows;
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Result};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    execute_stream, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use omendb::{limits, Database, Row, TableDef, Write};
use std::fmt;
use std::sync::Arc;

/// The sink of `INSERT INTO t ...`: collects the statement's rows and inserts them with one
/// `insert_batch`, so the statement is all or nothing (a duplicate key, a NULL primary key,
/// a value too large refuses every row). A statement of more than
/// [`limits::BATCH_ROWS_MAX`] rows is refused before any is written.
#[derive(Debug)]
pub(crate) struct InsertSink {
    db: Arc<Database>,
    def: TableDef,
    schema: SchemaRef,
}

impl InsertSink {
    pub(crate) fn new(db: Arc<Database>, def: TableDef, schema: SchemaRef) -> InsertSink {
        InsertSink { db, def, schema }
    }
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OmenInsert: table={}", self.def.name())
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut rows: Vec<Row> = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if rows.len() + batch.num_rows() > limits::BATCH_ROWS_MAX {
                return Err(unsupported(format!(
                    "INSERT of more than {} rows in one statement into {:?}; split it \
                     (each statement is one all-or-nothing batch)",
                    limits::BATCH_ROWS_MAX,
                    self.def.name()
                )));
            }
            rows.extend(batch_to_rows(&self.def, &batch).map_err(to_datafusion)?);
        }
        let count = rows.len() as u64;
        if rows.is_empty() {
            return Ok(0);
        }
        let db = self.db.clone();
        let table = self.def.name().to_string();
        blocking(move || db.insert_batch(&table, rows)).await?;
        Ok(count)
    }
}

/// What a [`DmlExec`] does with each row its input yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DmlOp {
    /// Input: one column, the key. Deletes the row.
    Delete,
    /// Input: the whole new row. Replaces the row of its key.
    Update,
}

/// `DELETE` or `UPDATE`: runs its input (a scan of the selected rows, planned with the
/// table's access paths) and, batch by batch as it arrives, submits one engine write per
/// row; then waits once, for the last, so the statement costs one log sync. Output: one row, `count`, the rows changed.
#[derive(Debug)]
pub(crate) struct DmlExec {
    db: Arc<Database>,
    def: TableDef,
    op: DmlOp,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        ArrowType::UInt64,
        false,
    )]))
}

impl DmlExec {
    pub(crate) fn new(
        db: Arc<Database>,
        def: TableDef,
        op: DmlOp,
        input: Arc<dyn ExecutionPlan>,
    ) -> DmlExec {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        DmlExec {
            db,
            def,
            op,
            input,
            properties,
        }
    }
}

impl DisplayAs for DmlExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            DmlOp::Delete => "OmenDelete",
            DmlOp::Update => "OmenUpdate",
        };
        write!(f, "{op}: table={}", self.def.name())
    }
}

impl ExecutionPlan for DmlExec {
    fn name(&self) -> &'static str {
        "DmlExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|_| {
            datafusion::error::DataFusionError::Internal("DmlExec takes one input".into())
        })?;
        Ok(Arc::new(DmlExec::new(
            self.db.clone(),
            self.def.clone(),
            self.op,
            input,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("DmlExec has one partition, asked for {partition}");
        }
        let input = self.input.clone();
        let db = self.db.clone();
        let def = self.def.clone();
        let op = self.op;
        let run = async move {
            // Batch by batch, so a statement over a large table holds one batch of writes,
            // not the whole selection; the scan reads a snapshot, so the writes do not
            // change what it yields.
            let mut rows = execute_stream(input, context)?;
            let mut count = 0u64;
            let mut last = None;
            while let Some(batch) = rows.next().await {
                let writes = writes(&def, op, &batch?)?;
                count += writes.len() as u64;
                let db = db.clone();
                let submitted = blocking(move || {
                    let mut last = None;
                    for write in writes {
                        last = Some(db.submit(write)?);
                    }
                    Ok(last)
                })
                .await?;
                last = submitted.or(last);
            }
            if let Some(ticket) = last {
                blocking(move || db.wait(ticket)).await?;
            }
            let counts: ArrayRef = Arc::new(UInt64Array::from(vec![count]));
            Ok(RecordBatch::try_new(count_schema(), vec![counts])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(run),
        )))
    }
}

/// The engine writes for the rows in `batch`.
fn writes(def: &TableDef, op: DmlOp, batch: &RecordBatch) -> Result<Vec<Write>> {
    let table = def.name().to_string();
    let mut writes = Vec::new();
    match op {
        DmlOp::Delete => {
            let keys = batch.column(0);
            let keys: Vec<i64> = if let Some(k) = keys.as_any().downcast_ref::<Int64Array>() {
                k.values().to_vec()
            } else if let Some(k) = keys.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                k.values().to_vec()
            } else {
                return internal_err!("DELETE's key column has type {}", keys.data_type());
            };
            writes.extend(keys.into_iter().map(|key| Write::Delete {
                table: table.clone(),
                key,
            }));
        }
        DmlOp::Update => {
            for row in batch_to_rows(def, batch).map_err(to_datafusion)? {
                let key = match &row[def.primary_key_index()] {
                    omendb::Value::Int64(k) | omendb::Value::Timestamp(k) => *k,
                    other => return internal_err!("UPDATE's key has type {}", other.type_name()),
                };
                writes.push(Write::Update {
                    table: table.clone(),
                    key,
                    row,
                });
            }
        }
    }
    Ok(writes)
}

/// Runs an engine call that may block (a log sync) off DataFusion's async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> omendb::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
        .map_err(external)
}

fn to_datafusion(error: crate::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(error))
}
