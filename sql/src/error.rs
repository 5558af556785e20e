//! The error type of the SQL layer: an engine error kept as the engine's typed value, or
//! a SQL error (parse, plan, unsupported statement or type) with DataFusion's message.

use datafusion::error::DataFusionError;

/// Result alias of the SQL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a SQL statement can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused or failed: a duplicate key, a type or NULL the table does not
    /// take, an I/O error, corruption. The database is as the engine's error says (a
    /// refused write changed nothing).
    #[error(transparent)]
    Engine(#[from] omendb::Error),
    /// A statement or type the SQL layer does not support, with what to use instead.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A SQL error from DataFusion: bad syntax, an unknown table or column, a type that
    /// does not fit an operator, a failed execution.
    #[error("{0}")]
    Sql(DataFusionError),
}

impl From<DataFusionError> for Error {
    /// Finds an engine error wrapped anywhere in DataFusion's error chain and keeps it
    /// typed; anything else stays DataFusion's.
    fn from(error: DataFusionError) -> Error {
        match unwrap_engine(error) {
            Ok(engine) => Error::Engine(engine),
            Err(other) => match unsupported_message(&other) {
                Some(message) => Error::Unsupported(message),
                None => Error::Sql(other),
            },
        }
    }
}

/// The engine error inside `error`, through DataFusion's context and sharing wrappers.
fn unwrap_engine(error: DataFusionError) -> Result<omendb::Error, DataFusionError> {
    match error {
        DataFusionError::External(inner) => match inner.downcast::<omendb::Error>() {
            Ok(engine) => Ok(*engine),
            Err(inner) => match inner.downcast::<Error>() {
                Ok(ours) => match *ours {
                    Error::Engine(engine) => Ok(engine),
                    other => Err(DataFusionError::External(Box::new(other))),
                },
                Err(inner) => Err(DataFusionError::External(inner)),
            },
        },
        DataFusionError::Context(context, inner) => unwrap_engine(*inner)
            .map_err(|inner| DataFusionError::Context(context, Box::new(inner))),
        DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(inner) => unwrap_engine(inner),
            Err(shared) => Err(DataFusionError::Shared(shared)),
        },
        other => Err(other),
    }
}

/// The message of one of our own `Unsupported` errors carried through DataFusion.
fn unsupported_message(error: &DataFusionError) -> Option<String> {
    match error {
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(Error::Unsupported(message)) => Some(message.clone()),
            _ => None,
        },
        DataFusionError::Context(_, inner) => unsupported_message(inner),
        DataFusionError::Shared(inner) => unsupported_message(inner),
        _ => None,
    }
}

/// An engine error as a DataFusion error, for code that runs inside DataFusion.
pub(crate) fn external(error: omendb::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// One of our `Unsupported` errors as a DataFusion error.
pub(crate) fn unsupported(message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(Error::Unsupported(message.into())))
}
